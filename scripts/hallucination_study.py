"""The hallucination study: pooled vs attention captioners, cross-entropy vs SCST, on shapes (Rohrbach et al. 2018).

Usage: ``python scripts/hallucination_study.py [--out runs/study] [--seeds 0 1] [--models …] [--no-scst] [--no-bias]
[--doc docs/hallucination.md] [--record docs/hallucination_study.json] [--quick] [--table-only]``

Each model (a stack of configs on ``configs/shapes.yaml``: pooled LSTMs, the attention decoders, and the pooled
RWKV, Mamba and Transformer decoders) is trained with cross-entropy by the main job
(``scripts/main.py``: train, caption the test split with beam 3, evaluate), then fine-tuned with SCST
(``configs/scst.yaml``) from its cross-entropy checkpoint and evaluated the same way; every arm runs once per
seed: per seed, every cross-entropy arm, then every SCST arm. Pooled models train on the shapes schedule (12 epochs), attention
models on ``configs/schedules/attention.yaml`` (the main job's default). Then the co-occurrence-bias arm
(``scripts/bias_experiment.py``: biased against natural training scenes, one debiased test split) runs for the
model with the lowest cross-entropy CHAIRi and for the lecture's pooled model. The table (mean and spread over
seeds) of BLEU-4, CIDEr, CHAIRs, CHAIRi and binding errors, and the bias table, go to ``OUT/study.json`` and,
as Markdown, to ``--doc``. A run whose ``metrics_test.json`` exists, or that ``--record`` (``docs/hallucination_study.json``,
committed: per arm the metrics and the machine) holds, is not repeated, so an interrupted study resumes, on
this machine or another; ``--table-only`` runs nothing and tabulates what has finished.
``--quick`` runs every arm for a few steps on a tiny set (a smoke run: its numbers
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

GRID = ["configs/encoders/grid8.yaml", "configs/schedules/attention.yaml"]  # as the main job's default
LECTURE = "pooled every_step (the lecture's model)"
MODELS: dict[str, list[str]] = {  # name -> config layers on configs/shapes.yaml
    LECTURE: [],
    "pooled init_state (Show and Tell)": ["configs/injection/init_state.yaml"],
    "show_attend_tell": ["configs/decoders/show_attend_tell.yaml", *GRID],
    "att2in": ["configs/decoders/att2in.yaml", *GRID],
    "updown": ["configs/decoders/updown.yaml", *GRID],
    # The lecture's closing section: modern recurrences and the Transformer, reading the pooled v like the LSTM
    # (configs/decoders/*.yaml, the shapes schedule).
    "rwkv": ["configs/decoders/rwkv.yaml"],
    "mamba": ["configs/decoders/mamba.yaml"],
    "transformer": ["configs/decoders/transformer.yaml"],
    # The same three reading the 8x8 grid through attention after every block (configs/blocks/grid.yaml).
    "rwkv grid": ["configs/decoders/rwkv.yaml", "configs/blocks/grid.yaml", *GRID],
    "mamba grid": ["configs/decoders/mamba.yaml", "configs/blocks/grid.yaml", *GRID],
    "transformer grid": ["configs/decoders/transformer.yaml", "configs/blocks/grid.yaml", *GRID],
}
METRICS = ("Bleu_4", "CIDEr", "CHAIRs", "CHAIRi", "binding_errors")
QUICK = ["--data.init_args.num_train=64", "--data.init_args.num_val=16", "--data.init_args.num_test=16",
         "--data.init_args.eval_batch_size=16", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
BIAS_QUICK = ["--num-train", "64", "--num-val", "16", "--num-test", "16", "--epochs", "1", "--warmup-steps", "2"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/study, runs/study-quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every arm")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"models to run (default all: {'; '.join(MODELS)})")
    parser.add_argument("--no-scst", action="store_true", help="cross-entropy arms only")
    parser.add_argument("--no-bias", action="store_true", help="skip the co-occurrence-bias arm")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "hallucination.md", help="Markdown table")
    parser.add_argument("--quick", action="store_true", help="a few steps per arm on a tiny set (smoke run)")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: tabulate the arms (and bias results) that have finished so far")
    parser.add_argument("--record", type=Path, default=REPO / "docs" / "hallucination_study.json",
                        help="every finished arm's metrics, kept across machines (an arm recorded here is not rerun)")
    args = parser.parse_args(argv)
    args.out = args.out or REPO / "runs" / ("study-quick" if args.quick else "study")
    if args.quick:
        args.doc, args.record = args.out / "hallucination.md", args.out / "record.json"
    return args


def machine() -> str:
    """This machine's CPU model, cores, torch threads and the precision an unset config trains in: where and how
    a recorded arm ran."""
    import os

    import torch

    from captioning.core.runtime import fast_precision

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").is_file() else "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {fast_precision()}"


class Record:
    """The study's durable record (``--record``, committed with the docs): per model, objective and seed, the
    test metrics and the machine, and each finished bias experiment. Run folders are scratch; the record is what
    the table is built from, so an arm that finished on another machine is neither lost nor rerun."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.arms = {(a["model"], a["objective"], a["seed"]): a for a in data.get("arms", [])}
        self.bias: dict = data.get("bias", {})  # model -> {"machine": ..., "arms": bias_experiment's results}

    def get(self, model: str, objective: str, seed: int) -> dict | None:
        return self.arms.get((model, objective, seed))

    def put(self, model: str, objective: str, seed: int, metrics: dict) -> None:
        """Records a finished run's metrics (written at once: an interrupted study keeps it)."""
        entry = {"model": model, "objective": objective, "seed": seed, **{k: metrics.get(k) for k in METRICS},
                 "machine": metrics.get("machine") or machine()}
        self._write({(model, objective, seed): entry}, {})

    def put_bias(self, model: str, results: dict) -> None:
        """Records a finished bias experiment's results (``{arm: results}``) for ``model``."""
        self._write({}, {model: {"machine": machine(), "arms": results}})

    def _write(self, arms: dict, bias: dict) -> None:
        if self.path.is_file():  # another study process (one per core) may have recorded arms since
            other = Record(self.path)
            self.arms, self.bias = {**other.arms, **self.arms}, {**other.bias, **self.bias}
        self.arms.update(arms)
        self.bias.update(bias)
        write_json_atomic(self.path, {"arms": sorted(self.arms.values(), key=lambda a: (a["seed"], a["model"],
                                                                                          a["objective"])),
                                      **({"bias": self.bias} if self.bias else {})})


def run_arm(main_job, layers: list[str], out: Path, seed: int, extra: list[str], recorded: dict | None,
            record: Record, key: tuple[str, str]) -> dict | None:
    """One main-job run (train, caption, evaluate) unless its metrics exist in ``out`` or the record; returns
    its metrics (None for an unfinished arm when ``main_job`` is None: tabulating only)."""
    metrics = out / "metrics_test.json"
    if not metrics.is_file():
        if recorded is not None:
            return recorded
        if main_job is None:
            return None
        configs = [a for layer in ["configs/shapes.yaml", *layers] for a in ("--config", str(REPO / layer))]
        main_job.main([*configs, "--out", str(out), f"--seed_everything={seed}", "--examples", "0",
                       "--trainer.enable_progress_bar=false", *extra])
    result = json.loads(metrics.read_text())
    if recorded is None:
        record.put(*key, seed, result)
    return result


def load_script(name: str):
    """One of this folder's scripts as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slug(name: str) -> str:
    return name.split(" (")[0].replace(" ", "_")


def run_study(args: argparse.Namespace) -> dict:
    """Every model × objective × seed: per seed, every cross-entropy arm, then every SCST arm (so a study cut
    short compares the families first); returns ``{model: {objective: [metrics per seed]}}``."""
    main_job = None if args.table_only else load_script("main")
    extra = [*QUICK, f"--data.init_args.root={args.out / 'shapes'}"] if args.quick else []
    record = Record(args.record)
    results: dict = {name: {} for name in args.models}
    for seed in args.seeds:
        ce = {}
        for name in args.models:
            start = time.perf_counter()
            ce[name] = run_arm(main_job, MODELS[name], args.out / slug(name) / f"ce-seed{seed}", seed, extra,
                               record.get(name, "cross-entropy", seed), record, (name, "cross-entropy"))
            if ce[name] is not None:
                results[name].setdefault("cross-entropy", []).append(ce[name])
            print(f"study: {name}, cross-entropy, seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        for name in [] if args.no_scst else [n for n in args.models if ce[n] is not None]:
            start = time.perf_counter()
            recorded = record.get(name, "CE then SCST", seed)
            if recorded is None and not Path(ce[name].get("checkpoint", "")).is_file():
                print(f"study: {name}, CE then SCST, seed {seed}: skipped, its cross-entropy checkpoint is not on "
                      "this machine (the cross-entropy arm is in the record only)", flush=True)
                continue
            scst = run_arm(main_job, [*MODELS[name], "configs/scst.yaml"], args.out / slug(name) / f"scst-seed{seed}",
                           seed, [*extra, f"--model.init_weights={ce[name].get('checkpoint')}"], recorded, record,
                           (name, "CE then SCST"))
            if scst is not None:
                results[name].setdefault("CE then SCST", []).append(scst)
            print(f"study: {name}, CE then SCST, seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return results


def run_bias(args: argparse.Namespace, results: dict) -> dict:
    """The co-occurrence-bias experiment for the model with the lowest cross-entropy CHAIRi and for the lecture's
    model (when the study ran it): ``{model: {arm: results}}`` (``scripts/bias_experiment.py``'s, which resumes finished arms)."""
    def chairi(name: str) -> float:
        return statistics.fmean(r["CHAIRi"] for r in results[name]["cross-entropy"])

    best = min(results, key=chairi)
    bias = load_script("bias_experiment")
    out = {}
    for name in dict.fromkeys([best, *[LECTURE] * (LECTURE in results)]):  # the best, then the lecture's model
        layers = [a for layer in MODELS[name] for a in ("--config", layer)]
        out[name] = bias.main([*layers, "--out", str(args.out / "bias" / slug(name)),
                               *(BIAS_QUICK if args.quick else [])])
    return out


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


def markdown(table: dict, bias: dict, quick: bool) -> str:
    """The study's table as Markdown (mean ± half the spread over seeds), then the bias arm's."""
    lines = ["### The table (shapes test split, beam 3)", "",
             "Generated by `python scripts/hallucination_study.py`" + (" --quick (smoke run: numbers mean nothing)"
                                                                      if quick else "") + ".", "",
             "| model | objective | seeds | " + " | ".join(METRICS) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |"]
    for key, row in table.items():
        model, objective = key.split(" | ")
        cells = ["-" if row[m] is None else f"{row[m]['mean']:.3f} ± {row[m]['spread'] / 2:.3f}" for m in METRICS]
        lines.append(f"| {model} | {objective} | {row['seeds']} | " + " | ".join(cells) + " |")
    if bias:
        lines += ["", "Co-occurrence bias (`scripts/bias_experiment.py`, seed 0, its scaled-down schedule; the same "
                  "debiased test split for every row; partner rate: images holding one of circle/square whose "
                  "caption names the absent other):", "",
                  "| model | training scenes | BLEU-4 | CHAIRs | CHAIRi | partner rate |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for model, arms in bias.items():
            for arm, r in arms.items():
                p = r["partner"]
                lines.append(f"| {model} | {arm} | {r['Bleu_4']:.3f} | {r['CHAIRs']:.3f} | {r['CHAIRi']:.3f} | "
                             f"{p['rate']:.3f} ({p['named_partner']} / {p['cases']}) |")
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
    results = run_study(args)
    table = summarize(results)
    if args.table_only:
        bias = {name: json.loads(path.read_text()) for name in MODELS
                if (path := args.out / "bias" / slug(name) / "bias_results.json").is_file()}
    else:
        bias = {} if args.no_bias else run_bias(args, results)
    record = Record(args.record)
    for name, result in bias.items():
        record.put_bias(name, result)
    recorded = {name: entry["arms"] for name, entry in record.bias.items() if name in args.models}
    bias = {**recorded, **bias}  # also those that ran on another machine
    write_json_atomic(args.out / "study.json", {"arms": table, "bias": bias})
    write_doc(args.doc, markdown(table, bias, args.quick))
    print(markdown(table, bias, args.quick))
    print(f"wrote {args.out / 'study.json'} and {args.doc}")
    return table


if __name__ == "__main__":
    main()
