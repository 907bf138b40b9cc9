"""Co-occurrence-bias experiment: does a captioner trained on biased shapes scenes hallucinate?

Usage: ``python scripts/bias_experiment.py [--out runs/bias] [--num-train 4000] [--epochs 10] [--arms natural cooccur]
[--config LAYER …]``

Trains one captioner per arm, ``configs/shapes.yaml`` layered with ``configs/bias/<arm>.yaml`` (``natural``:
natural training scenes; ``cooccur``: circles and squares together in 95% of the training scenes that hold
either), both scaled down by the options below. Both arms share the same debiased test split (circles and
squares never together); each captions it (beam search) with its best-validation-BLEU-4 checkpoint and is
scored with BLEU-4, CHAIRs/CHAIRi (shape categories; ground truth = instances ∪ reference mentions) and the
*partner-hallucination rate*: among test images holding exactly one member of a biased pair, the share whose
caption names the absent partner. Writes ``OUT/<arm>/captions_test.json`` and ``OUT/bias_results.json`` and
prints a table. An arm whose ``captions_test.json`` exists is not retrained (delete it, or pass --retrain).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captioning.inference.checkpoint import load_captioner  # noqa: E402
from captioning.cli.fit import cli_main  # noqa: E402
from captioning.data.shapes import _PLURAL, _SHAPE_SYNONYM, COLOURS  # noqa: E402
from captioning.inference.engine import caption_files  # noqa: E402
from captioning.core.io import write_json_atomic  # noqa: E402

SHAPE_WORDS = {**{s: s for s in _PLURAL}, **{p: s for s, p in _PLURAL.items()},
               **{w: s for s, w in _SHAPE_SYNONYM.items()}, **{w + "s": s for s, w in _SHAPE_SYNONYM.items()},
               "boxes": "square"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bias", help="output folder")
    parser.add_argument("--arms", nargs="+", default=["natural", "cooccur"], help="configs/bias/<arm>.yaml to run")
    parser.add_argument("--num-train", type=int, default=4000, help="training images per arm")
    parser.add_argument("--num-val", type=int, default=200, help="validation images per arm")
    parser.add_argument("--num-test", type=int, default=500, help="test images (the same split for every arm)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per arm")
    parser.add_argument("--warmup-steps", type=int, default=120, help="learning-rate warm-up steps")
    parser.add_argument("--beam-size", type=int, default=3, help="beam size for captioning the test split")
    parser.add_argument("--config", action="append", default=[], metavar="LAYER",
                        help="config layered on configs/shapes.yaml before the arm's, repeatable (default: none, the "
                             "lecture's pooled model; e.g. configs/decoders/updown.yaml configs/encoders/grid8.yaml)")
    parser.add_argument("--retrain", action="store_true", help="retrain arms that already have captions")
    return parser.parse_args(argv)


def train_and_caption(arm: str, args: argparse.Namespace) -> Path:
    """Trains one arm (unless its captions exist) and writes its test captions; returns their path."""
    out = args.out / arm
    captions_path = out / "captions_test.json"
    if captions_path.is_file() and not args.retrain:
        return captions_path
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        layers = ["configs/shapes.yaml", *args.config, f"configs/bias/{arm}.yaml"]
        cli = cli_main(["fit", *[a for layer in layers for a in ("--config", str(REPO / layer))],
                        f"--trainer.default_root_dir={out}", f"--trainer.max_epochs={args.epochs}",
                        "--trainer.enable_progress_bar=false",
                        f"--model.lr_scheduler.init_args.warmup_steps={args.warmup_steps}",
                        f"--data.init_args.root={out / 'data'}", f"--data.init_args.num_train={args.num_train}",
                        f"--data.init_args.num_val={args.num_val}", f"--data.init_args.num_test={args.num_test}"])
    ckpt = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    images = cli.datamodule.images("test")
    captions = caption_files(load_captioner(ckpt), [img.path for img in images], batch_size=250,
                             beam_size=args.beam_size, max_len=cli.model.hparams.max_len)
    write_json_atomic(captions_path, [{"image_id": img.image_id, "caption": cap}
                                      for img, (cap, _) in zip(images, captions)])
    write_json_atomic(out / "run.json", {"checkpoint": str(ckpt), "train_seconds": time.perf_counter() - start})
    return captions_path


def named_objects(caption: str) -> set[tuple[str, str]]:
    """The (colour or "", shape) pairs a shapes caption names; a colour directly precedes its shape word."""
    words = caption.lower().split()
    named = set()
    for i, w in enumerate(words):
        if w in SHAPE_WORDS:
            colour = words[i - 1] if i and words[i - 1] in COLOURS else ""
            named |= {("", SHAPE_WORDS[w]), (colour, SHAPE_WORDS[w])}
    return named


def _member(text: str) -> tuple[str, str]:
    words = text.split()
    return ("", words[0]) if len(words) == 1 else (words[0], words[1])


def partner_hallucination(captions: dict[int, str], objects: dict[int, set[tuple[str, str]]],
                          pairs: list[list[str]]) -> dict:
    """Among (image, pair) cases where the image holds exactly one member, how often the caption names the other."""
    cases = named = 0
    examples = []
    for image_id, caption in sorted(captions.items()):
        have = objects[image_id] | {("", shape) for _, shape in objects[image_id]}
        said = named_objects(caption)
        for a, b in ([_member(m) for m in p] for p in pairs):
            for present, absent in ((a, b), (b, a)):
                if present in have and absent not in have:
                    cases += 1
                    named += absent in said
                    if absent in said and len(examples) < 5:
                        examples.append({"image_id": image_id, "caption": caption})
    return {"cases": cases, "named_partner": named, "rate": named / cases if cases else 0.0,
            "examples": examples}


def evaluate_arm(captions_path: Path, data_root: Path, pairs: list[list[str]]) -> dict:
    """BLEU-4, CIDEr, CHAIRs/CHAIRi (``captioning evaluate``) and the partner-hallucination rate of one arm."""
    from captioning.data.shapes import SYNONYMS
    from captioning.evaluation.evaluate import evaluate

    annotations = data_root / "annotations"
    metrics = evaluate(captions_path, annotations / "captions_test.json", annotations / "instances_test.json",
                       SYNONYMS, backend="python", log=lambda _: None)
    captions = {row["image_id"]: row["caption"] for row in metrics["per_image"]}
    instances = json.loads((annotations / "instances_test.json").read_text())
    objects: dict[int, set[tuple[str, str]]] = {i: set() for i in captions}
    for ann in instances["annotations"]:
        objects[ann["image_id"]].add((ann["color"], instances["categories"][ann["category_id"] - 1]["name"]))
    hallucinated = Counter(m["category"] for row in metrics["per_image"] for m in row["hallucinated"])
    return {**{k: metrics[k] for k in ("Bleu_4", "CIDEr", "CHAIRs", "CHAIRi")},
            "hallucinated_by_category": dict(sorted(hallucinated.items())),
            "partner": partner_hallucination(captions, objects, pairs),
            "mean_words": sum(len(c.split()) for c in captions.values()) / len(captions)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = {}
    for arm in args.arms:
        captions_path = train_and_caption(arm, args)
        meta = json.loads((args.out / arm / "data" / "shapes_meta.json").read_text())
        results[arm] = {"meta": meta, **evaluate_arm(captions_path, args.out / arm / "data", meta["cooccur_pairs"])}
    tests = {arm: (args.out / arm / "data" / "annotations/captions_test.json").read_bytes() for arm in args.arms}
    if len(set(tests.values())) != 1:
        raise RuntimeError(f"the arms' test splits differ ({', '.join(args.arms)}); their numbers do not compare")
    write_json_atomic(args.out / "bias_results.json", results)
    print(f"\n{'arm':10} {'BLEU-4':>7} {'CIDEr':>6} {'CHAIRs':>7} {'CHAIRi':>7} {'partner':>8} {'cases':>6}")
    for arm, r in results.items():
        p = r["partner"]
        print(f"{arm:10} {r['Bleu_4']:7.4f} {r['CIDEr']:6.3f} {r['CHAIRs']:7.4f} {r['CHAIRi']:7.4f} "
              f"{p['rate']:8.4f} {p['cases']:6d}  hallucinated mentions: {r['hallucinated_by_category']}")
    for arm, r in results.items():
        print(f"\n{arm}: captions naming the absent partner (image id: caption)")
        print("\n".join(f"  {e['image_id']}: {e['caption']}" for e in r["partner"]["examples"]))
    print(f"Wrote {args.out / 'bias_results.json'}")
    return results


if __name__ == "__main__":
    main()
