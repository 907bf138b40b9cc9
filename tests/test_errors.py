"""Bad input gets a clear error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.inference.checkpoint import load_captioner
from captioning.data.coco import CaptionDataset, read_caption_file
from captioning.data.images import load_image
from captioning.training.datamodules import CaptionDataModule
from captioning.data.vocab import Vocabulary


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_missing_annotation_file_names_the_path(tmp_path: Path) -> None:
    dm = CaptionDataModule(root=str(tmp_path), train_split="train2014")
    with pytest.raises(FileNotFoundError, match=r"annotations/captions_train2014\.json"):
        dm.vocab


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "captions.json", '{"images": [')
    with pytest.raises(ValueError, match=r"captions\.json: not valid JSON"):
        read_caption_file(path, tmp_path)


@pytest.mark.parametrize("data,message", [
    ({"annotations": []}, "the file has no field 'images'"),
    ({"images": {}, "annotations": []}, "field 'images' must be list"),
    ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] has no field 'file_name'"),
    ({"images": [{"id": "1", "file_name": "a.png"}], "annotations": []}, r"images\[0\] field 'id' must be int"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1}]},
     r"annotations\[0\] has no field 'caption'"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "x"}]},
     "refers to image_id 2, which is not in 'images'"),
])
def test_bad_fields_are_named(tmp_path: Path, data: dict, message: str) -> None:
    path = _write(tmp_path / "captions_val.json", data)
    with pytest.raises(ValueError, match=message) as err:
        read_caption_file(path, tmp_path)
    assert "captions_val.json" in str(err.value)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.png"):
        load_image(tmp_path / "broken.png", 32)
    ann = _write(tmp_path / "captions.json", {"images": [{"id": 7, "file_name": "gone.jpg"}],
                                             "annotations": [{"image_id": 7, "caption": "a cat"}]})
    dataset = CaptionDataset(read_caption_file(ann, tmp_path), Vocabulary(["a", "cat"]), 32, with_tokens=True)
    with pytest.raises(ValueError, match=r"gone\.jpg"):
        dataset[0]


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_captioner(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.ckpt: not a readable checkpoint"):
        load_captioner(tmp_path / "junk.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt: no 'captioning' entry"):
        load_captioner(tmp_path / "other.ckpt")
