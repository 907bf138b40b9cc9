"""A feature cache: what made it (the encoder's identity, checked by readers) and reading it: encoder features of every image, memory-mapped ``.npy`` files plus ``index.json``.

Layout of a cache folder (written by ``captioning features``)::

    index.json                 format, identity (encoder, weights hash, image size, transform), dtype,
                               and per split: image_ids, pooled file, grid file or null, shapes
    <split>.pooled.npy         (N, D)     pooled feature v of each image, rows in image_ids order
    <split>.grid.npy           (N, h*w, D) spatial grid (optional)

The arrays are opened lazily, read-only, once per process, so any number of DataLoader workers read them
concurrently; nothing is loaded into memory up front.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from captioning.data.images import IMAGE_TRANSFORM

INDEX = "index.json"
FORMAT = 1


class SplitFeatures:
    """The cached features of one split, looked up by image id.

    Args:
        folder: The cache folder.
        name: Split name.
        entry: The split's entry of ``index.json``.
    """

    def __init__(self, folder: Path, name: str, entry: dict) -> None:
        self.folder, self.name = folder, name
        self.files = {"pooled": entry["pooled"], "grid": entry.get("grid")}
        self.row = {image_id: i for i, image_id in enumerate(entry["image_ids"])}
        self._arrays: dict[str, np.ndarray] = {}
        self._pid = -1

    def __getstate__(self) -> dict:  # workers reopen the files instead of receiving copies of the arrays
        return {**self.__dict__, "_arrays": {}, "_pid": -1}

    def _array(self, kind: str) -> np.ndarray:
        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        if kind not in self._arrays:
            if self.files[kind] is None:
                raise ValueError(f"{self.folder / INDEX}: split {self.name!r} has no {kind} features "
                                 f"(extract them with --grid)")
            self._arrays[kind] = np.load(self.folder / self.files[kind], mmap_mode="r")
        return self._arrays[kind]

    def _index(self, image_id: int) -> int:
        if image_id not in self.row:
            raise KeyError(f"{self.folder / INDEX}: split {self.name!r} has no features for image {image_id}")
        return self.row[image_id]

    def pooled(self, image_id: int) -> np.ndarray:
        """Pooled feature (D,) as float32."""
        return np.asarray(self._array("pooled")[self._index(image_id)], dtype=np.float32)

    def grid(self, image_id: int) -> np.ndarray:
        """Spatial grid (h*w, D) as float32."""
        return np.asarray(self._array("grid")[self._index(image_id)], dtype=np.float32)

    def require(self, image_ids: list[int], kind: str = "pooled") -> None:
        """Raises ``ValueError`` naming the first image the cache lacks, or when it holds no ``kind`` features."""
        if kind not in ("pooled", "grid"):
            raise ValueError(f"feature kind must be 'pooled' or 'grid', got {kind!r}")
        if not self.files.get(kind):
            raise ValueError(f"{self.folder / INDEX}: split {self.name!r} has no {kind} features; extract the cache "
                             f"again with `captioning features --grid`")
        missing = [i for i in image_ids if i not in self.row]
        if missing:
            raise ValueError(f"{self.folder / INDEX}: split {self.name!r} lacks features for {len(missing)} "
                             f"images (e.g. image {missing[0]}); extract the cache again")


class FeatureCache:
    """A feature cache folder; reads only ``index.json`` until features are asked for.

    Args:
        folder: The cache folder.

    Raises:
        FileNotFoundError: if ``index.json`` is not there.
        ValueError: naming the file, when the index is malformed or of another format.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"feature cache index not found: {path} (make it with `captioning features`)")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ValueError(f"{path}: not a feature cache index of format {FORMAT}")
        for field in ("identity", "splits"):
            if not isinstance(index.get(field), dict):
                raise ValueError(f"{path}: no {field!r} object")
        self.index = index

    @property
    def identity(self) -> dict:
        """What made the features: encoder configuration, weights hash, image size and transform."""
        return self.index["identity"]

    def split(self, name: str) -> SplitFeatures:
        """The features of one split."""
        if name not in self.index["splits"]:
            raise ValueError(f"{self.folder / INDEX}: no split {name!r} (has {sorted(self.index['splits'])}); "
                             f"extract it with `captioning features`")
        return SplitFeatures(self.folder, name, self.index["splits"][name])


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a module's state dict."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_identity(encoder: nn.Module, image_size: int) -> dict:
    """What determines cached features: the encoder's kind and backbone, its weights (hash), the input size
    and the image transform (resizing plus the encoder's own normalization)."""
    config = getattr(encoder, "config", {})
    return {"encoder": {k: config[k] for k in ("name", "model") if k in config},
            "weights_sha256": weights_hash(encoder), "image_size": int(image_size),
            "transform": {"pixels": IMAGE_TRANSFORM, "mean": encoder.mean.flatten().tolist(),
                          "std": encoder.std.flatten().tolist()}}


def check_identity(recorded: dict, encoder: nn.Module, image_size: int, source: str = "feature cache") -> None:
    """Refuses cached features that another encoder, other weights or another transform made.

    Raises:
        ValueError: naming the cache and each field that differs, or saying the encoder is not frozen.
    """
    if not getattr(encoder, "freeze", False):
        raise ValueError(f"{source}: cached features need a frozen encoder (set the encoder's freeze: true); "
                         f"a fine-tuned encoder changes its features every step")
    own = encoder_identity(encoder, image_size)
    diffs = [f"{k}: cache {recorded.get(k)!r} vs model {own[k]!r}" for k in own if recorded.get(k) != own[k]]
    if diffs:
        raise ValueError(f"{source} was made by a different encoder or transform than this model's; refusing it "
                         f"(extract it again with `captioning features`):\n  " + "\n  ".join(diffs))
