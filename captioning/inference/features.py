"""Running a frozen encoder over image files and writing its features into a cache (read back by
:mod:`captioning.data.features`; the command is ``captioning features``)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from captioning.core.io import atomic_path, write_json_atomic
from captioning.data.coco import CaptionedImage
from captioning.data.features import FORMAT, INDEX
from captioning.data.images import ImageRef, image_loader

DTYPES = ("float32", "float16")


def _open_array(tmp: Path, shape: tuple[int, ...], dtype: str) -> np.memmap:
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)


@torch.inference_mode()
def extract_split(encoder: nn.Module, images: list[CaptionedImage], folder: Path, split: str, image_size: int,
                  grid: bool = False, dtype: str = "float32", batch_size: int = 64, num_workers: int = 2,
                  device: str = "cpu") -> dict:
    """Writes ``<split>.pooled.npy`` (and ``<split>.grid.npy``) atomically; returns the split's index entry.

    Raises:
        ValueError: naming the first image that cannot be read (a training cache must be complete).
    """
    if not images:
        raise ValueError(f"split {split} has no images to extract")
    refs = [ImageRef(str(img.path), img.path, img.image_id) for img in images]
    loader = image_loader(refs, image_size, batch_size, num_workers)
    files = {"pooled": f"{split}.pooled.npy", "grid": f"{split}.grid.npy" if grid else None}
    arrays: dict[str, np.memmap] = {}
    with contextlib.ExitStack() as stack:
        tmps = {k: stack.enter_context(atomic_path(folder / name)) for k, name in files.items() if name}
        row = 0
        for batch in tqdm(loader, desc=f"features {split}", unit="batch", dynamic_ncols=True):
            if batch["failed"]:
                ref, reason = batch["failed"][0]
                raise ValueError(f"cannot read image file {ref.path} (split {split}): {reason}")
            v, g = encoder(batch["image"].to(device), return_grid=grid)  # (B, D), (B, N, D) or None
            if not arrays:
                arrays = {k: _open_array(tmps[k], (len(refs), *x.shape[1:]), dtype)
                          for k, x in (("pooled", v), ("grid", g)) if k in tmps}
            for k, x in (("pooled", v), ("grid", g)):
                if k in arrays:
                    arrays[k][row:row + len(v)] = x.float().cpu().numpy()
            row += len(v)
        for array in arrays.values():
            array.flush()
        arrays.clear()
    return {"image_ids": [ref.image_id for ref in refs], **files, "count": len(refs)}


def update_index(folder: Path, identity: dict, split: str, entry: dict, dtype: str) -> None:
    """Adds a split to ``index.json`` (atomically); a cache of other features is never mixed into."""
    path = folder / INDEX
    index = {"format": FORMAT, "identity": identity, "dtype": dtype, "splits": {}}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("identity") != identity or old.get("dtype") != dtype:
            raise ValueError(f"{path}: holds features of another encoder, transform or dtype; "
                             f"use another --output folder")
        index["splits"] = old.get("splits", {})
    index["splits"][split] = entry
    write_json_atomic(path, index)
