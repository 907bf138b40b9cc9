"""``captioning features``: run a frozen encoder once over a dataset's splits and cache its features.

Example::

    captioning features --config configs/coco.yaml --output data/coco/features/lite0-224 [--grid]
    captioning fit --config configs/coco.yaml --config configs/coco_features.yaml

The encoder and data (splits, image size) come from the same training config, so the cache matches the
run that reads it; the cache records the encoder, a hash of its weights and the image transform, and
training refuses a cache whose record differs from its own encoder
(:func:`captioning.data.features.check_identity`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captioning.cli.fit import cli_main
from captioning.core.runtime import keep_freed_memory
from captioning.data.features import INDEX, check_identity, encoder_identity
from captioning.inference.features import DTYPES, extract_split, update_index


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
    keep_freed_memory()  # 2× encoder throughput on CPU (see captioning.core.runtime)
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
