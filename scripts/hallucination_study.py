"""The hallucination study: pooled vs attention captioners, cross-entropy vs SCST, on shapes (Rohrbach et al. 2018).

Usage: ``python scripts/hallucination_study.py [--out runs/study] [--seeds 0 1] [--models …] [--no-scst]
[--doc docs/hallucination.md] [--quick]``

Each model (a stack of configs on ``configs/shapes.yaml``) is trained with cross-entropy by the main job
(``scripts/main.py``: train, caption the test split with beam 3, evaluate), then fine-tuned with SCST
(``configs/scst.yaml``) from its cross-entropy checkpoint and evaluated the same way; every arm runs once per
seed. The table (mean and spread over seeds) of BLEU-4, CIDEr, CHAIRs, CHAIRi and binding errors goes to
``OUT/study.json`` and, as Markdown, to ``--doc``. A run whose ``metrics_test.json`` exists is not repeated, so
an interrupted study resumes. ``--quick`` runs every arm for a few steps on a tiny set (a smoke run: its numbers
mean nothing) and writes its table under ``OUT`` only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captioning.core.io import write_json_atomic, write_text_atomic  # noqa: E402

GRID = "configs/encoders/grid8.yaml"
MODELS: dict[str, list[str]] = {  # name -> config layers on configs/shapes.yaml
    "pooled every_step (the lecture's model)": [],
    "pooled init_state (Show and Tell)": ["configs/injection/init_state.yaml"],
    "show_attend_tell": ["configs/decoders/show_attend_tell.yaml", GRID],
    "att2in": ["configs/decoders/att2in.yaml", GRID],
    "updown": ["configs/decoders/updown.yaml", GRID],
}
METRICS = ("Bleu_4", "CIDEr", "CHAIRs", "CHAIRi", "binding_errors")
QUICK = ["--data.init_args.num_train=64", "--data.init_args.num_val=16", "--data.init_args.num_test=16",
         "--data.init_args.eval_batch_size=16", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/study, runs/study-quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every arm")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"models to run (default all: {'; '.join(MODELS)})")
    parser.add_argument("--no-scst", action="store_true", help="cross-entropy arms only")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "hallucination.md", help="Markdown table")
    parser.add_argument("--quick", action="store_true", help="a few steps per arm on a tiny set (smoke run)")
    args = parser.parse_args(argv)
    args.out = args.out or REPO / "runs" / ("study-quick" if args.quick else "study")
    if args.quick:
        args.doc = args.out / "hallucination.md"
    return args


def run_arm(main_job, layers: list[str], out: Path, seed: int, extra: list[str]) -> dict:
    """One main-job run (train, caption, evaluate) unless its metrics exist; returns its METRICS.json."""
    metrics = out / "metrics_test.json"
    if not metrics.is_file():
        configs = [a for layer in ["configs/shapes.yaml", *layers] for a in ("--config", str(REPO / layer))]
        main_job.main([*configs, "--out", str(out), f"--seed_everything={seed}", "--examples", "0",
                       "--trainer.enable_progress_bar=false", *extra])
    return json.loads(metrics.read_text())


def run_study(args: argparse.Namespace) -> dict:
    """Every model × objective × seed; returns ``{model: {objective: [metrics per seed]}}``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("main_job", REPO / "scripts" / "main.py")
    main_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main_job)
    extra = [*QUICK, f"--data.init_args.root={args.out / 'shapes'}"] if args.quick else []
    results: dict = {}
    for name in args.models:
        slug = name.split(" (")[0].replace(" ", "_")
        for seed in args.seeds:
            start = time.perf_counter()
            ce = run_arm(main_job, MODELS[name], args.out / slug / f"ce-seed{seed}", seed, extra)
            results.setdefault(name, {}).setdefault("cross-entropy", []).append(ce)
            if not args.no_scst:
                scst = run_arm(main_job, [*MODELS[name], "configs/scst.yaml"], args.out / slug / f"scst-seed{seed}",
                               seed, [*extra, f"--model.init_weights={ce['checkpoint']}"])
                results[name].setdefault("CE then SCST", []).append(scst)
            print(f"study: {name}, seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return results


def summarize(results: dict) -> dict:
    """Mean and spread (max - min) over seeds of each metric, per model and objective."""
    table = {}
    for name, objectives in results.items():
        for objective, runs in objectives.items():
            row = {}
            for key in METRICS:
                values = [r[key] for r in runs if r.get(key) is not None]
                row[key] = None if not values else {"mean": statistics.fmean(values),
                                                    "spread": max(values) - min(values), "runs": values}
            table[f"{name} | {objective}"] = {"seeds": len(runs), **row}
    return table


def markdown(table: dict, quick: bool) -> str:
    """The study's table as Markdown (mean ± half the spread over seeds)."""
    lines = ["# Hallucination study (shapes)", "",
             "Generated by `python scripts/hallucination_study.py`" + (" --quick (smoke run: numbers mean nothing)"
                                                                      if quick else "") + ".", "",
             "| model | objective | seeds | " + " | ".join(METRICS) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |"]
    for key, row in table.items():
        model, objective = key.split(" | ")
        cells = ["-" if row[m] is None else f"{row[m]['mean']:.3f} ± {row[m]['spread'] / 2:.3f}" for m in METRICS]
        lines.append(f"| {model} | {objective} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- study table: begin -->", "<!-- study table: end -->"


def write_doc(doc: Path, table_md: str) -> None:
    """Puts the table between the doc's markers (keeping the prose around it), or writes it whole."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{table_md}{END}{rest.split(END, 1)[1]}"
    else:
        text = table_md
    write_text_atomic(doc, text)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    table = summarize(run_study(args))
    write_json_atomic(args.out / "study.json", table)
    write_doc(args.doc, markdown(table, args.quick))
    print(markdown(table, args.quick))
    print(f"wrote {args.out / 'study.json'} and {args.doc}")
    return table


if __name__ == "__main__":
    main()
