"""COCO-format caption datasets: official ``captions_*.json`` files and their image folders.

The same reader serves real COCO and the built-in shapes data. Every problem with the input is reported
with the file (and field) it comes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captioning.data.features import SplitFeatures
from captioning.data.images import load_image
from captioning.data.vocab import Vocabulary


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a caption file: its COCO id, file path and reference captions."""

    image_id: int
    path: Path
    captions: tuple[str, ...]


def _require(record: dict, field: str, kind: type | tuple, where: str, source: Path):
    if field not in record:
        raise ValueError(f"{source}: {where} has no field {field!r}")
    if not isinstance(record[field], kind):
        raise ValueError(f"{source}: {where} field {field!r} must be {getattr(kind, '__name__', kind)}, "
                         f"got {type(record[field]).__name__}")
    return record[field]


def read_caption_file(annotation_file: str | Path, image_dir: str | Path) -> list[CaptionedImage]:
    """Reads an official COCO captions file and checks every field this codebase uses.

    Args:
        annotation_file: A ``captions_<split>.json`` file.
        image_dir: The folder holding the split's images (``file_name`` is relative to it).

    Returns:
        The images that have at least one caption, ordered by image id.
    """
    path, image_dir = Path(annotation_file), Path(image_dir)
    if not path.is_file():
        raise FileNotFoundError(f"caption annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    images = _require(data, "images", list, "the file", path)
    annotations = _require(data, "annotations", list, "the file", path)
    files: dict[int, str] = {}
    for i, img in enumerate(images):
        image_id = _require(img, "id", int, f"images[{i}]", path)
        files[image_id] = _require(img, "file_name", str, f"images[{i}]", path)
    captions: dict[int, list[str]] = {}
    for i, ann in enumerate(annotations):
        image_id = _require(ann, "image_id", int, f"annotations[{i}]", path)
        text = _require(ann, "caption", str, f"annotations[{i}]", path)
        if image_id not in files:
            raise ValueError(f"{path}: annotations[{i}] refers to image_id {image_id}, which is not in 'images'")
        captions.setdefault(image_id, []).append(text)
    return [CaptionedImage(i, image_dir / files[i], tuple(captions[i])) for i in sorted(captions)]


def read_instance_categories(path: str | Path) -> dict[int, list[str]]:
    """Image id -> object category names of an official ``instances_*.json`` file (for CHAIR)."""
    from captioning.metrics.chair import instance_categories

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    try:
        return instance_categories(data)
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: {err}") from err
class CaptionDataset(Dataset):
    """One item per image: the image, its id, its reference captions and (for training) their token ids.

    Training items carry *all* captions of an image, so the encoder runs once per image per epoch.

    Args:
        images: Images from :func:`read_caption_file`.
        vocab: Vocabulary used to encode captions.
        image_size: Side length images are resized to.
        with_tokens: Encode the captions (training).
        max_words: Encoded captions are cut to this many words (``<END>`` is kept).
        categories: Image id -> object category names (for CHAIR); items then carry ``categories``.
        features: Cached encoder features of the split: items then carry ``features`` (D,) instead of
            ``image``.
    """

    def __init__(self, images: list[CaptionedImage], vocab: Vocabulary, image_size: int,
                 with_tokens: bool, max_words: int = 20,
                 categories: Mapping[int, Sequence[str]] | None = None, features: SplitFeatures | None = None) -> None:
        self.images, self.vocab, self.image_size = images, vocab, image_size
        self.with_tokens, self.max_words, self.categories = with_tokens, max_words, categories
        self.features = features
        if features is not None:
            features.require([img.image_id for img in images])

    def __len__(self) -> int:
        return len(self.images)

    def _encode(self, caption: str) -> Tensor:
        ids = self.vocab.encode(caption)
        if len(ids) > self.max_words + 2:
            ids = ids[: self.max_words + 1] + [self.vocab.end_id]
        return torch.tensor(ids, dtype=torch.long)

    def __getitem__(self, idx: int) -> dict:
        img = self.images[idx]
        item = {"image_id": img.image_id, "references": list(img.captions)}
        if self.features is not None:
            item["features"] = torch.from_numpy(self.features.pooled(img.image_id))  # (D,)
        else:
            item["image"] = load_image(img.path, self.image_size)  # (3, S, S)
        if self.categories is not None:
            item["categories"] = list(self.categories.get(img.image_id, ()))
        if self.with_tokens:
            item["tokens"] = [self._encode(c) for c in img.captions]
        return item


def collate(items: list[dict]) -> dict:
    """Stacks images (or cached features) and keeps ids, references and (when present) object categories as
    lists; training captions of all images are padded with ``<PAD>`` into one (N, T) tensor, with ``owner``
    (N,) giving each caption's image in the batch."""
    key = "features" if "features" in items[0] else "image"
    batch = {key: torch.stack([it[key] for it in items]),  # (B, 3, S, S) images or (B, D) features
             "image_id": torch.tensor([it["image_id"] for it in items]),
             "references": [it["references"] for it in items]}
    if "categories" in items[0]:
        batch["categories"] = [it["categories"] for it in items]
    if "tokens" in items[0]:
        captions = [t for it in items for t in it["tokens"]]
        batch["tokens"] = torch.nn.utils.rnn.pad_sequence(
            captions, batch_first=True, padding_value=Vocabulary.pad_id)  # (N, T)
        batch["owner"] = torch.tensor([b for b, it in enumerate(items) for _ in it["tokens"]])  # (N,)
    return batch
