"""``captioning caption``: caption a folder, a list of image files or a COCO annotation file in batch.

Example::

    captioning caption --checkpoint runs/coco/.../last.ckpt --images photos/ --output photos.jsonl --beam-size 3
    captioning caption --checkpoint last.ckpt --images data/coco/annotations/captions_val2017.json \\
        --format coco --output val2017_results.json --device cuda --devices 4 --precision bf16

    captioning caption --checkpoint last.ckpt --images 'shards/{00000..00099}.tar' --output captions/ --resume

Each output line is ``{"image_id", "file_name", "caption", "score"}`` (``image_id`` is the COCO id when the
input is a COCO annotation file, else ``null``); ``--format coco`` writes the COCO results list instead.
WebDataset tar shards (a brace pattern, a ``.tar`` or a folder of them) give one ``OUTPUT/<shard>.jsonl`` per
shard whose rows also carry the sample's ``key``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captioning.inference.engine import DecodeOptions
from captioning.data.shards import is_shard_source
from captioning.inference.output import FORMATS, CaptionJob
from captioning.inference.shard_output import ShardJob
from captioning.training.predict import caption_collection

PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(prog="captioning caption", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training checkpoint (carries vocabulary and config)")
    p.add_argument("--images", required=True,
                   help="folder (recursive), text file with one path per line, COCO annotation .json, or "
                        "WebDataset tar shards: a .tar, a brace pattern 'shards/{00000..00099}.tar' or a folder of .tar")
    p.add_argument("--image-dir", help="image folder of a COCO annotation file (default: found beside it)")
    p.add_argument("--output", help="output file (default: captions.jsonl, or captions.json for --format coco); "
                                    "for tar shards the folder of the per-shard outputs (default: captions/)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="jsonl, or coco (results list); default coco for a COCO annotation file, else jsonl")
    p.add_argument("--errors", help="list of unreadable images (default: OUTPUT's name + .errors.jsonl)")
    p.add_argument("--resume", action="store_true", help="keep captions already in the output; caption the rest")
    p.add_argument("--beam-size", type=int, default=1, help="1 = greedy")
    p.add_argument("--max-len", type=int, default=20, help="maximum words per caption")
    p.add_argument("--length-penalty", type=float, default=0.0, help="beam-search length-penalty exponent")
    p.add_argument("--sample", action="store_true", help="sample captions (reproducible with --seed)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most probable words (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader processes reading images")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where the model runs")
    p.add_argument("--devices", type=int, default=1, help="processes/devices (several: DDP, shards merged)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="32", help="32, bf16 or 16 (autocast)")
    p.add_argument("--attention", action="store_true",
                   help="attention decoders: add each word's region weights to every line (for the gallery)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def make_job(args: argparse.Namespace) -> CaptionJob | ShardJob:
    """The run's files from the options (defaults depend on the input kind)."""
    if is_shard_source(args.images):
        for flag, value in (("--format coco", args.format == "coco"), ("--errors", args.errors),
                            ("--image-dir", args.image_dir)):
            if value:
                raise ValueError(f"{flag} does not apply to tar shards ({args.images}): each shard gets "
                                 f"OUTPUT/<shard>.jsonl and OUTPUT/<shard>.errors.jsonl")
        return ShardJob(args.images, args.output or "captions", resume=args.resume)
    fmt = args.format or ("coco" if Path(args.images).suffix.lower() == ".json" else "jsonl")
    output = args.output or ("captions.json" if fmt == "coco" else "captions.jsonl")
    return CaptionJob(args.images, output, fmt=fmt, errors=args.errors, resume=args.resume, image_dir=args.image_dir)


def run(args: argparse.Namespace) -> dict:
    """Captions the images; returns the summary (``captioned``, ``kept``, ``errors``, ``total``, ``seconds``)."""
    options = DecodeOptions(beam_size=args.beam_size, max_len=args.max_len, length_penalty=args.length_penalty,
                            sample=args.sample, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                            attention=args.attention)
    job = make_job(args)
    return caption_collection(job, args.checkpoint, options, args.batch_size, args.num_workers,
                              args.device, args.devices, PRECISIONS[args.precision], progress=not args.no_progress)


def main(argv: list[str] | None = None) -> dict:
    """Entry point; exits with status 1 when no image could be captioned."""
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"captioning caption: error: {err}")
    if "captioned" not in summary:  # not rank 0 of a multi-process run: rank 0 reports
        return summary
    rate = summary["captioned"] / max(summary["seconds"], 1e-9)
    print(f"captioned {summary['captioned']} images ({rate:.1f} images/s), kept {summary['kept']} from the "
          f"existing output, {summary['errors']} unreadable"
          + (f" (listed in {summary['errors_file']})" if summary["errors"] else "")
          + f"; {summary['total']} captions in {summary['output']}"
          + (f" ({summary['shards']} shards captioned, {summary['shards_skipped']} finished before)"
             if "shards" in summary else ""), file=sys.stderr)
    if summary["total"] == 0:
        sys.exit("captioning caption: error: no image could be captioned")
    return summary
