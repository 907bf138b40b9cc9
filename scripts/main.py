"""The main job: build shapes, train the default captioner, caption the test split, evaluate.

Usage: ``python scripts/main.py [--config configs/shapes.yaml [--config LAYER …]] [--out runs/main] [--beam-size 3] [--quick]
[--key=value …]`` (other ``--key=value`` arguments go to ``captioning fit``).
``--quick`` runs the same code path on a tiny shapes set (its own folder, a few training steps) in about a
minute: what CI runs after installing the project as the README says.
Writes ``OUT/captions_test.json`` (COCO results format), ``OUT/metrics_test.json`` (``captioning evaluate``'s
METRICS.json: BLEU-1..4, METEOR, ROUGE-L, CIDEr, CHAIRs, CHAIRi, per image), the HTML gallery
``OUT/gallery/index.html``, the hallucination report ``OUT/hallucination/`` and the checkpoints under ``OUT/``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captioning.inference.checkpoint import load_captioner  # noqa: E402
from captioning.cli.fit import cli_main  # noqa: E402
from captioning.inference.engine import caption_files, has_attention_maps  # noqa: E402
from captioning.evaluation.evaluate import evaluate  # noqa: E402
from captioning.evaluation.toolkit import BACKENDS  # noqa: E402
from captioning.core.io import write_json_atomic  # noqa: E402


# The default captioner: RWKV blocks reading the 8×8 regions (attention after every block), 4 epochs: with updown
# and the grid Transformer the least hallucination within the 10-minute budget, and the only one of them under
# the binding-error target (docs/hallucination.md). `--config configs/shapes.yaml` alone: the lecture's pooled model.
DEFAULT = [str(REPO / "configs" / layer) for layer in ("shapes.yaml", "decoders/rwkv.yaml", "blocks/grid.yaml",
                                                       "encoders/grid8.yaml", "schedules/attention.yaml")]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the remaining arguments, passed on to LightningCLI ``fit``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other arguments go to `captioning fit`, e.g. --trainer.max_epochs=2.")
    parser.add_argument("--config", action="append", help="LightningCLI config to train, repeatable to layer "
                        "configs (default: RWKV reading the region grid, DEFAULT above; "
                        "configs/shapes.yaml alone: the lecture's pooled model)")
    parser.add_argument("--out", default="runs/main", help="output folder (checkpoints, captions, metrics)")
    parser.add_argument("--beam-size", type=int, default=3, help="beam size for captioning the test split")
    parser.add_argument("--examples", type=int, default=8, help="example captions to print")
    parser.add_argument("--metrics-backend", choices=BACKENDS, default="auto",
                        help="caption metrics: pycocoevalcap (Java), python (Java-free), auto (default)")
    parser.add_argument("--quick", action="store_true",
                        help="the same steps on a tiny shapes set in OUT/shapes (default OUT: runs/main-quick): "
                             "generation, a few training steps, captioning, evaluation, report, gallery")
    args, overrides = parser.parse_known_args(argv)
    args.config = args.config or DEFAULT
    if args.quick:
        args.out = "runs/main-quick" if args.out == parser.get_default("out") else args.out
        overrides = [*QUICK, f"--data.init_args.root={Path(args.out) / 'shapes'}", *overrides]
    return args, overrides


# --quick: 96 training scenes (3 steps of 32), 24 validation and 24 test scenes, one epoch.
QUICK = ["--data.init_args.num_train=96", "--data.init_args.num_val=24", "--data.init_args.num_test=24",
         "--data.init_args.eval_batch_size=24", "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1"]


def main(argv: list[str] | None = None) -> dict:
    args, overrides = parse_args(argv)
    start = time.perf_counter()
    with warnings.catch_warnings():  # this script's own options are in sys.argv, not LightningCLI's
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        configs = [a for config in args.config for a in ("--config", config)]
        cli = cli_main(["fit", *configs, f"--trainer.default_root_dir={args.out}", *overrides])
    trained = time.perf_counter()
    ckpt = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    loaded = load_captioner(ckpt)  # the checkpoint alone is enough to caption
    images = cli.datamodule.images("test")
    maps = [] if has_attention_maps(loaded.model.decoder) else None  # region attention: maps for the gallery
    captions = caption_files(loaded, [img.path for img in images], batch_size=250, beam_size=args.beam_size,
                             max_len=cli.model.hparams.max_len, device=str(cli.trainer.strategy.root_device),
                             maps=maps)
    results = [{"image_id": img.image_id, "caption": cap} for img, (cap, _) in zip(images, captions)]
    for row, weights in zip(results, maps or []):
        row["attention"] = [[round(a, 4) for a in word] for word in weights]  # extra key: COCO tools ignore it
    out = Path(args.out)
    write_json_atomic(out / "captions_test.json", results)
    print(f"\nTest split: {len(images)} images, beam size {args.beam_size}, checkpoint {ckpt}")
    annotations, instances, image_dir = cli.datamodule.split_files("test")
    metrics = evaluate(out / "captions_test.json", annotations, instances, cli.datamodule.synonyms,
                       backend=args.metrics_backend, gallery=out / "gallery", images=image_dir,
                       report=out / "hallucination" if instances and cli.datamodule.synonyms else None)
    write_json_atomic(out / "metrics_test.json", {"checkpoint": str(ckpt), "beam_size": args.beam_size, **metrics})
    print("\nExamples (generated | first reference):")
    for img, r in list(zip(images, results))[: args.examples]:
        print(f"  {r['caption']!r:60} | {img.captions[0]!r}")
    end = time.perf_counter()
    print(f"\nData + training {trained - start:.0f} s, captioning + evaluation {end - trained:.0f} s, "
          f"total {end - start:.0f} s")
    print(f"Wrote {out / 'captions_test.json'}, {out / 'metrics_test.json'} and {out / 'gallery' / 'index.html'}")
    return metrics


if __name__ == "__main__":
    main()
