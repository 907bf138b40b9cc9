"""The VQA main job: build the shapes VQA set, train the default VQA model, answer the test split, evaluate.

Usage: ``python scripts/vqa_main.py [--config configs/vqa/shapes.yaml …] [--out runs/vqa_main] [--key=value …]``
(other ``--key=value`` arguments go to ``captioning vqa fit``).
Writes ``OUT/vqa_results_test.json`` (official results format), ``OUT/vqa_metrics_test.json`` (as
``captioning vqa-evaluate --output``) and the checkpoints under ``OUT/``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from captioning.data.vqa_files import write_results  # noqa: E402
from captioning.core.io import write_json_atomic  # noqa: E402
from captioning.training.vqa import VQAModule  # noqa: E402
from captioning.cli.vqa import evaluate_files, format_accuracy, vqa_cli_main  # noqa: E402


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the remaining arguments, passed on to ``captioning vqa fit``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other arguments go to `captioning vqa fit`, e.g. --trainer.max_epochs=2.")
    parser.add_argument("--config", action="append", help="LightningCLI config to train (repeat to layer "
                        "configs); default configs/vqa/shapes.yaml")
    parser.add_argument("--out", default="runs/vqa_main", help="output folder (checkpoints, results, metrics)")
    return parser.parse_known_args(argv)


def answer_split(model: VQAModule, loader) -> dict[int, str]:
    """Arg-max answers of every question in ``loader``."""
    model.eval()
    answers: dict[int, str] = {}
    with torch.no_grad():
        for batch in loader:
            answers.update(model.answer(batch))
    return answers


def main(argv: list[str] | None = None) -> dict:
    args, overrides = parse_args(argv)
    start = time.perf_counter()
    with warnings.catch_warnings():  # this script's own options are in sys.argv, not LightningCLI's
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        configs = [arg for path in args.config or ["configs/vqa/shapes.yaml"] for arg in ("--config", path)]
        cli = vqa_cli_main(["fit", *configs, f"--trainer.default_root_dir={args.out}", *overrides])
    trained = time.perf_counter()
    ckpt = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    model = cli.model
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    dm = cli.datamodule
    answers = answer_split(model, dm.test_dataloader())
    out = Path(args.out)
    questions, annotations = dm.files(dm.splits["test"])
    results = write_results(out / "vqa_results_test.json", answers,
                            [{"question_id": q} for img in dm.images("test") for q in img.question_ids])
    acc = evaluate_files(questions, annotations, results)  # exactly what `captioning vqa-evaluate` computes
    write_json_atomic(out / "vqa_metrics_test.json",
                      {"checkpoint": str(ckpt), **acc, "per_question": {str(k): v for k, v in acc["per_question"].items()}})
    print(f"\nTest split: {len(answers)} questions on {len(dm.images('test'))} images, checkpoint {ckpt}")
    print(format_accuracy(acc))
    end = time.perf_counter()
    print(f"\nData + training {trained - start:.0f} s, answering + evaluation {end - trained:.0f} s, "
          f"total {end - start:.0f} s")
    print(f"Wrote {results} and {out / 'vqa_metrics_test.json'}")
    return acc


if __name__ == "__main__":
    main()
