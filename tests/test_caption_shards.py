"""`captioning caption` over WebDataset tar shards: discovery, per-shard outputs, corrupt members, resume."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from caption_helpers import tiny_checkpoint
from captioning.cli.caption import main
from captioning.data.shards import ShardImages, discover_shards, expand_braces, is_shard_source

FIELDS = ["image_id", "file_name", "caption", "score", "key"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: list[tuple[str, bytes, dict | None]]) -> Path:
    """A tar in img2dataset's layout: ``KEY.png`` (+ ``KEY.json``) per sample."""
    with tarfile.open(path, "w") as tar:
        for key, image, meta in samples:
            _add(tar, f"{key}.png", image)
            if meta is not None:
                _add(tar, f"{key}.json", json.dumps(meta).encode())
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture()
def shards(tiny_shapes: Path, tmp_path: Path) -> Path:
    """``shards/00000.tar`` (3 scenes and a corrupt member) and ``shards/00001.tar`` (2 scenes, no JSON)."""
    pngs = sorted((tiny_shapes / "test").glob("*.png"))[:5]
    root = tmp_path / "shards"
    root.mkdir()
    first = [(f"{i:09d}", p.read_bytes(), {"key": f"{i:09d}", "url": f"http://x/{p.name}"}) for i, p in enumerate(pngs[:3])]
    write_shard(root / "00000.tar", first[:2] + [("000000099", b"\x89PNG garbage", {"key": "000000099"})] + first[2:])
    write_shard(root / "00001.tar", [(f"{i:09d}", p.read_bytes(), None) for i, p in enumerate(pngs[3:], 3)])
    return root


def _caption(ckpt: Path, images: str | Path, output: Path, *extra: str) -> dict:
    return main(["--checkpoint", str(ckpt), "--images", str(images), "--output", str(output), "--batch-size", "2",
                 "--num-workers", "0", "--no-progress", *extra])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_patterns_and_shard_discovery(shards: Path, tmp_path: Path) -> None:
    assert expand_braces("s/{008..011}.tar") == ["s/008.tar", "s/009.tar", "s/010.tar", "s/011.tar"]
    assert expand_braces("{0..1}-{1..2}.tar") == ["0-1.tar", "0-2.tar", "1-1.tar", "1-2.tar"]
    with pytest.raises(ValueError, match="runs backwards"):
        expand_braces("{3..1}.tar")
    assert is_shard_source(shards) and is_shard_source(f"{shards}/{{00000..00001}}.tar")
    assert not is_shard_source(shards.parent)  # a folder with images is an image folder
    assert discover_shards(shards) == discover_shards(f"{shards}/{{00000..00001}}.tar")
    with pytest.raises(FileNotFoundError, match="00002.tar.*1 of 3 shards"):
        discover_shards(f"{shards}/{{00000..00002}}.tar")
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copy(shards / "00000.tar", tmp_path / d / "00000.tar")
    with pytest.raises(ValueError, match="share the name '00000'"):
        discover_shards(f"{tmp_path}/d{{1..2}}/00000.tar")


def test_truncated_shard_keeps_samples_before_the_cut(shards: Path, tmp_path: Path) -> None:
    with tarfile.open(shards / "00000.tar") as tar:
        second = tar.getmember("000000001.png")
    cut = tmp_path / "cut.tar"  # ends inside the second sample's image
    cut.write_bytes((shards / "00000.tar").read_bytes()[: second.offset_data + second.size // 2])
    batches = list(ShardImages([(0, cut)], image_size=16, batch_size=8))
    assert len(batches) == 1 and batches[0]["shard_end"]
    assert [r.key for r in batches[0]["refs"]] == ["000000000"]
    reasons = [reason for _, reason in batches[0]["failed"]]
    assert any("truncated or corrupt tar after" in r for r in reasons), reasons


def test_one_output_per_shard_with_keys_and_corrupt_members(ckpt: Path, shards: Path, tiny_shapes: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "caps"
    summary = _caption(ckpt, f"{shards}/{{00000..00001}}.tar", out)
    assert summary["captioned"] == 5 and summary["errors"] == 1 and summary["shards"] == 2
    first, second = _rows(out / "00000.jsonl"), _rows(out / "00001.jsonl")
    assert all(list(r) == FIELDS for r in first + second)
    assert [r["file_name"] for r in first] == ["00000.tar/000000000.png", "00000.tar/000000001.png",
                                               "00000.tar/000000002.png"]
    assert first[0]["image_id"] == "000000000" and second[0]["image_id"] is None and second[0]["key"] == "000000003"
    errors = _rows(out / "00000.errors.jsonl")
    assert [e["file_name"] for e in errors] == ["00000.tar/000000099.png"] and errors[0]["error"].startswith("cannot decode")
    assert not (out / "00001.errors.jsonl").exists()
    folder = tmp_path / "folder"  # the same scenes as plain files caption the same
    folder.mkdir()
    for p in sorted((tiny_shapes / "test").glob("*.png"))[:5]:
        shutil.copy(p, folder / p.name)
    _caption(ckpt, folder, tmp_path / "folder.jsonl")
    assert [r["caption"] for r in first + second] == [r["caption"] for r in _rows(tmp_path / "folder.jsonl")]
    with pytest.raises(SystemExit, match="--format coco does not apply to tar shards"):
        _caption(ckpt, shards, out, "--format", "coco")


def test_resume_skips_finished_shards(ckpt: Path, shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "caps"
    _caption(ckpt, shards, out)
    expected = _rows(out / "00001.jsonl")
    (out / "00001.jsonl").unlink()  # as if killed while captioning the second shard
    (out / "00000.jsonl").write_text((out / "00000.jsonl").read_text() + "\n")  # marks the finished output
    before = (out / "00000.jsonl").stat().st_ino
    summary = _caption(ckpt, shards, out, "--resume")
    assert summary["shards"] == 1 and summary["shards_skipped"] == 1 and summary["captioned"] == 2
    assert summary["kept"] == 3 and summary["total"] == 5
    assert (out / "00000.jsonl").stat().st_ino == before and (out / "00000.jsonl").read_text().endswith("\n\n")
    assert _rows(out / "00001.jsonl") == expected
    assert _caption(ckpt, shards, out, "--resume")["captioned"] == 0
    assert _caption(ckpt, shards, out)["captioned"] == 5  # without --resume every shard is redone
