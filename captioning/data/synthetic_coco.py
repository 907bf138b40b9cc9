"""A synthetic COCO 2014 in the official layout, for scale rehearsals: real sizes, meaningless content.

At fraction 1.0: 82,783 train and 40,504 val images, 5 captions each (8–20 words drawn from a Zipf law over a
10,000-word vocabulary, with the names of some of the image's objects mixed in), instance files with the 80
COCO categories (the CHAIR table's category words) and about 7 objects per image. Every image file is a
**hard link to a shared 8×8 JPEG** (one copy per 50,000 links: ext4 allows 65,000 per file), so the set
costs inodes, not disk. ``results_<split>.json`` holds one
decoded-looking caption per image (for evaluation stages).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from captioning.core.io import atomic_path
from captioning.metrics.chair import TABLES, read_synonyms

COCO2014 = {"train2014": 82_783, "val2014": 40_504}
VOCAB_SIZE, ZIPF_EXPONENT, CAPTIONS_PER_IMAGE, OBJECTS_PER_IMAGE = 10_000, 1.1, 5, 7
LINKS_PER_FILE = 50_000  # hard links to one shared JPEG (ext4's limit is 65,000)


def split_sizes(fraction: float) -> dict[str, int]:
    """Images per split at ``fraction`` of COCO 2014 (at least one each).

    Raises:
        ValueError: for a fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return {split: max(1, round(n * fraction)) for split, n in COCO2014.items()}


def category_names() -> list[str]:
    """The 80 COCO category words of the packaged CHAIR table, in its order."""
    return [line[0] for line in read_synonyms(TABLES["coco"])]


def _words() -> list[str]:
    """10,000 distinct lowercase pseudo-words (letters only, so tokenizers keep them whole)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(letters[(i // 26 ** k) % 26] for k in range(3)) + "o" for i in range(VOCAB_SIZE)]


def _captions(rng: np.random.Generator, objects: list[np.ndarray], names: list[str], count: int) -> list[list[str]]:
    """``count`` captions per image: Zipf words, each caption naming one of the image's objects."""
    words = np.array(_words())
    weights = 1.0 / np.arange(1, VOCAB_SIZE + 1) ** ZIPF_EXPONENT
    n = len(objects) * count
    lengths = rng.integers(8, 21, size=n)
    drawn = words[rng.choice(VOCAB_SIZE, size=int(lengths.sum()), p=weights / weights.sum())]
    ends = np.cumsum(lengths)
    out: list[list[str]] = []
    for i, obj in enumerate(objects):
        caps = []
        for j in range(count):
            k = i * count + j
            tokens = list(drawn[ends[k] - lengths[k]:ends[k]])
            name = names[int(obj[j % len(obj)])]
            del tokens[len(tokens) - len(name.split()) + 1:]  # a two-word name ("traffic light") keeps the length
            tokens[int(rng.integers(1, len(tokens)))] = name
            caps.append("a " + " ".join(tokens[1:]) + ".")
        out.append(caps)
    return out


def _write_json(path: Path, data: dict | list) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def _link_images(folder: Path, names: list[str], jpeg: bytes) -> None:
    """Every name a hard link to one shared copy of ``jpeg``, a new copy per :data:`LINKS_PER_FILE` names
    (file systems cap the links to one file: ext4 at 65,000)."""
    for start in range(0, len(names), LINKS_PER_FILE):
        source = folder.parent / f"shared_8x8_{folder.name}_{start // LINKS_PER_FILE}.jpg"
        source.write_bytes(jpeg)
        for name in names[start:start + LINKS_PER_FILE]:
            target = folder / name
            if not target.exists():
                os.link(source, target)


def _write_split(root: Path, split: str, n: int, first_id: int, rng: np.random.Generator, jpeg: bytes) -> None:
    names = category_names()
    ids = list(range(first_id, first_id + n))
    objects = [rng.integers(0, len(names), size=max(1, int(k))) for k in rng.poisson(OBJECTS_PER_IMAGE, size=n)]
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images = [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg", "width": 8, "height": 8} for i in ids]
    _link_images(folder, [img["file_name"] for img in images], jpeg)
    captions = _captions(rng, objects, names, CAPTIONS_PER_IMAGE)
    anns = [{"id": len(ids) * j + k + first_id * CAPTIONS_PER_IMAGE, "image_id": i, "caption": c}
            for k, (i, caps) in enumerate(zip(ids, captions)) for j, c in enumerate(caps)]
    cats = [{"id": c + 1, "name": name, "supercategory": "object"} for c, name in enumerate(names)]
    _write_json(root / "annotations" / f"captions_{split}.json", {"info": {"description": "synthetic"},
                                                                  "images": images, "annotations": anns})
    box = [0.0, 0.0, 4.0, 4.0]
    instances = [{"id": a, "image_id": i, "category_id": int(c) + 1, "bbox": box, "area": 16.0, "iscrowd": 0,
                  "segmentation": [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]}
                 for a, (i, c) in enumerate(((i, c) for i, obj in zip(ids, objects) for c in obj), 1)]
    _write_json(root / "annotations" / f"instances_{split}.json", {"info": {"description": "synthetic"},
                                                                   "images": images, "annotations": instances,
                                                                   "categories": cats})
    results = [{"image_id": i, "caption": caps[int(rng.integers(len(caps)))]} for i, caps in zip(ids, captions)]
    _write_json(root / f"results_{split}.json", results)


def generate_synthetic_coco(root: str | Path, fraction: float, seed: int = 0) -> dict[str, int]:
    """Writes the set under ``root`` (``annotations/``, ``train2014/``, ``val2014/``, ``results_*.json``).

    Returns:
        Images per split.
    """
    root = Path(root)
    sizes = split_sizes(fraction)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 40)).save(buffer, format="JPEG", quality=90)
    rng = np.random.default_rng(seed)
    first = 1
    for split, n in sizes.items():
        _write_split(root, split, n, first, rng, buffer.getvalue())
        first += n
    return sizes
