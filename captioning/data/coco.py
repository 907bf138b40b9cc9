"""COCO-format caption datasets: official ``captions_*.json`` files and their image folders.

The same reader serves real COCO and the built-in shapes data. Every problem with the input is reported
with the file (and field) it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captioning.data.features import SplitFeatures
from captioning.data.formats import FormatError, load_json, require_field
from captioning.data.images import load_image
from captioning.data.vocab import Vocabulary
from captioning.metrics.chair import instance_categories


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a caption file: its COCO id, file path and reference captions."""

    image_id: int
    path: Path
    captions: tuple[str, ...]


def read_caption_file(annotation_file: str | Path, image_dir: str | Path) -> list[CaptionedImage]:
    """Reads an official COCO captions file and checks every field this codebase uses.

    Args:
        annotation_file: A ``captions_<split>.json`` file.
        image_dir: The folder holding the split's images (``file_name`` is relative to it).

    Returns:
        The images that have at least one caption, ordered by image id.
    """
    path, image_dir = Path(annotation_file), Path(image_dir)
    data = load_json(path, "caption annotation")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    images = require_field(data, "images", list, "the file", path)
    annotations = require_field(data, "annotations", list, "the file", path)
    files: dict[int, str] = {}
    for i, img in enumerate(images):
        image_id = require_field(img, "id", int, f"images[{i}]", path)
        files[image_id] = require_field(img, "file_name", str, f"images[{i}]", path)
    captions: dict[int, list[str]] = {}
    for i, ann in enumerate(annotations):
        image_id = require_field(ann, "image_id", int, f"annotations[{i}]", path)
        text = require_field(ann, "caption", str, f"annotations[{i}]", path)
        if image_id not in files:
            raise ValueError(f"{path}: annotations[{i}] refers to image_id {image_id}, which is not in 'images'")
        captions.setdefault(image_id, []).append(text)
    return [CaptionedImage(i, image_dir / files[i], tuple(captions[i])) for i in sorted(captions)]


def read_instances(path: str | Path) -> dict:
    """Reads an official COCO ``instances_*.json`` file and checks the fields CHAIR uses."""
    path = Path(path)
    data = load_json(path, "instances")
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object with 'categories' and 'annotations'")
    for key in ("categories", "annotations"):
        if not isinstance(data.get(key), list):
            raise FormatError(f"{path}: the file has no {key!r} list")
    names = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise FormatError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        names[cat["id"]] = cat["name"]
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int):
            raise FormatError(f"{path}: annotations[{i}] needs an integer 'image_id'")
        if ann.get("category_id") not in names:
            raise FormatError(f"{path}: annotations[{i}] has category_id {ann.get('category_id')!r}, "
                             f"which is not in 'categories'")
    return data


def read_instance_categories(path: str | Path) -> dict[int, list[str]]:
    """Image id -> object category names of an official ``instances_*.json`` file (for CHAIR)."""
    return instance_categories(read_instances(path))


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
            ``image``, or the region grid (N, D) with ``feature_kind="grid"`` (for attention decoders).
        feature_kind: ``pooled`` or ``grid``.
    """

    def __init__(self, images: list[CaptionedImage], vocab: Vocabulary, image_size: int,
                 with_tokens: bool, max_words: int = 20,
                 categories: Mapping[int, Sequence[str]] | None = None, features: SplitFeatures | None = None,
                 feature_kind: str = "pooled") -> None:
        self.images, self.vocab, self.image_size = images, vocab, image_size
        self.with_tokens, self.max_words, self.categories = with_tokens, max_words, categories
        self.features, self.feature_kind = features, feature_kind
        if features is not None:
            features.require([img.image_id for img in images], feature_kind)

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
            read = self.features.grid if self.feature_kind == "grid" else self.features.pooled
            item["features"] = torch.from_numpy(read(img.image_id))  # (D,) pooled or (N, D) grid
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
    batch = {key: torch.stack([it[key] for it in items]),  # (B, 3, S, S) images, (B, D) or (B, N, D) features
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
