"""Generates the built-in ``shapes`` captioning dataset and prints per-split counts.

Usage::

    python data/shapes/prepare.py [--root data/shapes/build] [--seed 0] [--num-train 8000] ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from captioning.data.shapes import SPLITS, generate_shapes  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / "build",
                   help="output directory (default: data/shapes/build)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=8000)
    p.add_argument("--num-val", type=int, default=500)
    p.add_argument("--num-test", type=int, default=500)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--cooccur", action="append", default=[], metavar="A,B",
                   help="a pair of objects ('circle' or 'red circle') to co-occur; repeatable")
    p.add_argument("--cooccur-rate", type=float, default=None,
                   help="train/val probability that a scene with one member holds the other (default: natural)")
    p.add_argument("--cooccur-rate-test", type=float, default=None,
                   help="the same for the test split (default: natural)")
    return p.parse_args(argv)


def summarize(root: Path) -> list[dict]:
    """Per-split counts of images, captions, instances and distinct caption words.

    Args:
        root: A generated shapes dataset.

    Returns:
        One dict per split (plus a final ``"all"`` row) with the counts and the word set.
    """
    rows, all_words = [], set()
    for split in SPLITS:
        caps = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
        inst = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        words = {w for a in caps["annotations"] for w in a["caption"].split()}
        all_words |= words
        rows.append({"split": split, "images": len(caps["images"]),
                     "captions": len(caps["annotations"]), "instances": len(inst["annotations"]),
                     "words": words})
    total = {k: sum(r[k] for r in rows) for k in ("images", "captions", "instances")}
    return [*rows, {"split": "all", **total, "words": all_words}]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: generate (or reuse) the dataset and print its counts."""
    args = _parse(argv)
    start = time.perf_counter()
    root = generate_shapes(args.root, num_train=args.num_train, num_val=args.num_val,
                           num_test=args.num_test, image_size=args.image_size,
                           max_objects=args.max_objects, seed=args.seed,
                           cooccur_pairs=[tuple(p.split(",")) for p in args.cooccur],
                           cooccur_rate=args.cooccur_rate, cooccur_rate_test=args.cooccur_rate_test)
    print(f"shapes dataset at {root} ({time.perf_counter() - start:.1f} s)")
    print(f"{'split':<6} {'images':>7} {'captions':>9} {'instances':>10} {'words':>6}")
    rows = summarize(root)
    for r in rows:
        print(f"{r['split']:<6} {r['images']:>7} {r['captions']:>9} {r['instances']:>10} "
              f"{len(r['words']):>6}")
    print("vocabulary: " + " ".join(sorted(rows[-1]["words"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
