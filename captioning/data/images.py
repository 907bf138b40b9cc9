"""Image collections to caption: a folder, a list of paths or a COCO annotation file, read tolerantly.

Unreadable images (missing, empty, corrupt, not an image) do not stop a run: the dataset returns the
reason instead of the image, and :func:`collate_images` keeps them apart from the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from captioning.core.runtime import worker_context

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})


IMAGE_TRANSFORM = "RGB, PIL bicubic resize to image_size x image_size, uint8 scaled to [0, 1]"  # recorded in caches


def load_image(path: str | Path | BinaryIO, image_size: int) -> Tensor:
    """Reads an image (a file, or an open binary stream such as a tar member's bytes) as RGB, resized to ``image_size``², scaled to [0, 1], (3, S, S).

    Raises:
        ValueError: naming the file, when it is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # PIL raises all of these
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, S, S)



@dataclass  # not frozen: Lightning rebuilds dataclasses found in a batch when moving it to a device
class ImageRef:
    """One image to caption.

    Attributes:
        file_name: How the output names it (relative to the folder, as listed, or COCO's ``file_name``);
            unique within a collection.
        path: Where it is read from.
        image_id: Its COCO id when the input is a COCO annotation file (for a tar shard sample, its JSON's
            ``image_id``/``id``/``key``), else ``None``.
        key: The sample's key inside a tar shard, else ``None``.
    """

    file_name: str
    path: Path
    image_id: int | str | None = None
    key: str | None = None


def _from_folder(folder: Path) -> list[ImageRef]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [ImageRef(p.relative_to(folder).as_posix(), p) for p in files]


def _from_list(list_file: Path) -> list[ImageRef]:
    refs, seen = [], set()
    for line in list_file.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if not name or name.startswith("#") or name in seen:
            continue
        seen.add(name)
        path = Path(name).expanduser()
        refs.append(ImageRef(name, path if path.is_absolute() else list_file.parent / path))
    return refs


def _coco_image_dirs(annotation_file: Path) -> list[Path]:
    """Where a COCO annotation file's images usually are: ``root/<split>`` beside ``root/annotations``,
    or the root itself (``file_name`` holding the split folder, as in Karpathy-split files)."""
    split = annotation_file.stem.split("_", 1)[-1]  # captions_val2017 -> val2017
    root = annotation_file.parent.parent
    return [root / split, annotation_file.parent / split, root, annotation_file.parent]


def _from_coco(annotation_file: Path, image_dir: Path | None) -> list[ImageRef]:
    try:
        data = json.loads(annotation_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{annotation_file}: not valid JSON ({err})") from err
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise ValueError(f"{annotation_file}: a COCO annotation file needs a non-empty 'images' list")
    entries = []
    for i, img in enumerate(images):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            raise ValueError(f"{annotation_file}: images[{i}] needs an integer 'id' and a string 'file_name'")
        entries.append((img["id"], img["file_name"]))
    if image_dir is None:
        candidates = _coco_image_dirs(annotation_file)
        image_dir = next((d for d in candidates if (d / entries[0][1]).is_file()), None)
        if image_dir is None:
            raise FileNotFoundError(f"{annotation_file}: cannot find its images: looked for {entries[0][1]!r} in "
                                    f"{', '.join(map(str, dict.fromkeys(candidates)))}; pass --image-dir")
    seen: dict[str, int] = {}
    for image_id, name in entries:
        if seen.setdefault(name, image_id) != image_id:
            raise ValueError(f"{annotation_file}: file_name {name!r} belongs to images {seen[name]} and {image_id}")
    unique = {image_id: name for image_id, name in entries}
    return [ImageRef(name, image_dir / name, image_id) for image_id, name in sorted(unique.items())]


def discover_images(source: str | Path, image_dir: str | Path | None = None) -> list[ImageRef]:
    """The images of a folder (recursive, common extensions, sorted), a text file (one path per line,
    relative to the file; blank lines and ``#`` comments skipped) or a COCO annotation file (``.json``).

    Args:
        source: The folder or file.
        image_dir: For a COCO annotation file, the folder its ``file_name`` entries are relative to
            (default: found beside the file, e.g. ``root/val2017`` for ``root/annotations/captions_val2017.json``).

    Raises:
        FileNotFoundError: if ``source`` does not exist or a COCO file's image folder cannot be found.
        ValueError: naming the file, when it lists no images or is malformed.
    """
    source = Path(source)
    if source.is_dir():
        refs = _from_folder(source)
        where = f"folder {source} (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
    elif source.is_file():
        refs = (_from_coco(source, Path(image_dir) if image_dir else None) if source.suffix.lower() == ".json"
                else _from_list(source))
        where = f"file {source}"
    else:
        raise FileNotFoundError(f"images not found: {source} is neither a folder nor a file")
    if not refs:
        raise ValueError(f"no images in {where}")
    return refs


def read_image(ref: ImageRef, image_size: int) -> torch.Tensor:
    """The image as (3, S, S) in [0, 1], or ``ValueError`` with a short reason (missing, empty, corrupt)."""
    if not ref.path.is_file():
        raise ValueError("missing: no such file")
    if ref.path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        return load_image(ref.path, image_size)
    except ValueError as err:
        raise ValueError(f"cannot decode: {err.__cause__ or err}") from err


class ImageFiles(Dataset):
    """Items ``{"index", "ref", "image"}``, or ``{"index", "ref", "error"}`` for an unreadable image.

    Args:
        refs: Images from :func:`discover_images`.
        image_size: Side length images are resized to.
    """

    def __init__(self, refs: list[ImageRef], image_size: int) -> None:
        self.refs, self.image_size = refs, image_size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, idx: int) -> dict:
        ref = self.refs[idx]
        try:
            return {"index": idx, "ref": ref, "image": read_image(ref, self.image_size)}
        except ValueError as err:
            return {"index": idx, "ref": ref, "error": str(err)}


def collate_images(items: list[dict]) -> dict:
    """The readable images stacked (``image`` (B, 3, S, S) or ``None``) with their ``refs``, the unreadable
    ones as ``failed`` ``(ref, reason)`` pairs, and ``first_index`` (the batch's first dataset index)."""
    ok = [it for it in items if "image" in it]
    return {"image": torch.stack([it["image"] for it in ok]) if ok else None,  # (B, 3, S, S)
            "refs": [it["ref"] for it in ok], "failed": [(it["ref"], it["error"]) for it in items if "error" in it],
            "first_index": items[0]["index"]}


def image_loader(refs: list[ImageRef], image_size: int, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of :func:`collate_images` over ``refs`` in order, read by ``num_workers`` worker processes (the
    loader of ``captioning caption``, :func:`~captioning.inference.engine.caption_files`, ``captioning features`` and
    the end-to-end benchmark)."""
    return DataLoader(ImageFiles(refs, image_size), batch_size=batch_size, num_workers=num_workers,
                      collate_fn=collate_images, multiprocessing_context=worker_context(num_workers))
