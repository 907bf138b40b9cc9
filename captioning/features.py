"""``captioning features``: run a frozen encoder once over a dataset's splits and cache its features.

Example::

    captioning features --config configs/coco.yaml --output data/coco/features/lite0-224 [--grid]
    captioning fit --config configs/coco.yaml --config configs/coco_features.yaml

The encoder and data (splits, image size) come from the same training config, so the cache matches the
run that reads it; the cache records the encoder, a hash of its weights and the image transform, and
training refuses a cache whose record differs from its own encoder (:func:`check_identity`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from captioning.data.coco import IMAGE_TRANSFORM, CaptionedImage
from captioning.data.features import FORMAT, INDEX
from captioning.data.images import ImageRef, image_loader
from captioning.io import atomic_path, write_json_atomic

DTYPES = ("float32", "float16")


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


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(prog="captioning features", description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True, help="training config(s), as for `captioning fit`")
    p.add_argument("--output", required=True, type=Path, help="cache folder")
    p.add_argument("--stages", nargs="+", default=["train", "val", "test"], choices=("train", "val", "test", "predict"),
                   help="whose splits to extract (each split once)")
    p.add_argument("--grid", action="store_true", help="also store the spatial grid (h*w, D) per image")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="stored precision")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Extracts the splits of the config's data with the config's encoder; returns the index."""
    from captioning.cli import cli_main
    from captioning.runtime import keep_freed_memory

    keep_freed_memory()  # 2× encoder throughput on CPU (see captioning.runtime)
    args, overrides = build_parser().parse_known_args(argv)
    configs = [a for c in args.config for a in ("--config", c)]
    cli = cli_main([*configs, *overrides, "--data.init_args.features=null"], run=False)
    encoder, data = cli.model.captioner.encoder.to(args.device).eval(), cli.datamodule
    identity = encoder_identity(encoder, data.image_size)
    check_identity(identity, encoder, data.image_size, source=str(args.output))  # frozen?
    args.output.mkdir(parents=True, exist_ok=True)
    for split, stage in {data.splits[s]: s for s in args.stages}.items():
        entry = extract_split(encoder, data.images(stage), args.output, split, data.image_size, args.grid,
                              args.dtype, args.batch_size, args.num_workers, args.device)
        update_index(args.output, identity, split, entry, args.dtype)
        print(f"{split}: {entry['count']} images → {args.output / entry['pooled']}")
    return json.loads((args.output / INDEX).read_text())
