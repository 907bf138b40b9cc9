"""The scale rehearsal: a synthetic COCO 2014 at several fractions, every stage timed in a fresh process.

Each stage runs as ``python -m captioning.benchmark.scale_stages`` under :func:`os.wait4`, which gives that
process's own peak RSS (its waited-for children included, and the ~0.9 GiB of the imports every stage shares).
``seconds`` is the stage's work as the process times it after those imports; ``process_seconds`` the whole
process. ``exponent`` is the least-squares slope of
log(seconds) over log(fraction): 1.0 is linear.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from captioning.core.io import write_json_atomic, write_text_atomic
from captioning.data.synthetic_coco import generate_synthetic_coco

STAGE_NAMES = ("annotations_vocab", "datamodule_setup", "train_loader_epoch", "val_metrics_5k", "evaluate_40k_python",
               "evaluate_40k_toolkit", "scst_document_frequencies", "gather_rows_2ranks", "caption_resume",
               "feature_cache")
BUDGETS = {"annotations_vocab": 30, "val_metrics_5k": 15, "evaluate_40k_python": 120, "scst_document_frequencies": 60}
RSS_BUDGET_MIB, EXPONENT_BUDGET = 4096, 1.15


def fit_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) over log(size).

    Raises:
        ValueError: with fewer than two distinct sizes, or a size or time that is not positive.
    """
    if len(set(sizes)) < 2 or len(sizes) != len(seconds):
        raise ValueError(f"an exponent needs two or more distinct sizes with one time each, got {sizes} / {seconds}")
    if min(sizes) <= 0 or min(seconds) <= 0:
        raise ValueError(f"sizes and times must be positive, got {sizes} / {seconds}")
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run_stage(stage: str, root: Path, work: Path, fraction: float) -> tuple[float, float, float]:
    """Seconds of the stage's work (the process times it, after its imports), seconds of the whole process and
    peak RSS (MiB) of one stage in a fresh process.

    Raises:
        RuntimeError: naming the stage and fraction, with the end of its output, when it fails.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "captioning.benchmark.scale_stages", stage, str(root),
                             str(work), str(fraction)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} at fraction {fraction} failed ({proc.returncode}):\n"
                           f"{output.decode(errors='replace')[-2000:]}")
    work_seconds = [float(line.split()[1]) for line in output.decode(errors="replace").splitlines()
                    if line.startswith("STAGE_SECONDS ")]
    return work_seconds[-1], seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def machine() -> dict:
    """Where the rehearsal ran and how busy the machine was (load averages at the end)."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def rehearse(out: Path, fractions: list[float], stages: list[str] | None = None, log=print) -> dict:
    """Generates the set at each fraction, runs every stage on it, writes ``scale.json`` and ``scale.md``."""
    stages = list(stages or STAGE_NAMES)
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {', '.join(STAGE_NAMES)}")
    results = {s: {"seconds": {}, "process_seconds": {}, "peak_rss_mib": 0.0} for s in stages}
    loads = []
    for fraction in sorted(fractions):
        root = out / f"data-{fraction:g}"
        sizes = generate_synthetic_coco(root, fraction)
        log(f"fraction {fraction:g}: {sizes}")
        for stage in stages:
            seconds, process, rss = run_stage(stage, root, out / "work" / f"{stage}-{fraction:g}", fraction)
            results[stage]["seconds"][f"{fraction:g}"] = round(seconds, 3)
            results[stage]["process_seconds"][f"{fraction:g}"] = round(process, 3)
            results[stage]["peak_rss_mib"] = round(max(results[stage]["peak_rss_mib"], rss), 1)
            loads.append(os.getloadavg()[0])
            log(f"  {stage}: {seconds:.2f} s ({process:.1f} s with start-up), {rss:.0f} MiB (load {loads[-1]:.1f})")
    for stage, entry in results.items():
        times = entry["seconds"]
        entry["exponent"] = (round(fit_exponent([float(f) for f in times], list(times.values())), 3)
                             if len(times) > 1 else None)
    report = {"stages": results, "machine": {**machine(), "load_during_run": [round(min(loads), 2),
                                                                              round(max(loads), 2)]}}
    write_json_atomic(out / "scale.json", report)
    write_text_atomic(out / "scale.md", markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    """The stages as a Markdown table (seconds per fraction, peak RSS, exponent, budget at full size)."""
    fractions = sorted({f for e in report["stages"].values() for f in e["seconds"]}, key=float)
    lines = ["| stage | " + " | ".join(f"s @ {f}" for f in fractions) + " | peak RSS MiB | exponent | budget @ 1.0 |",
             "| --- | " + " | ".join("---" for _ in fractions) + " | --- | --- | --- |"]
    for stage, e in report["stages"].items():
        cells = [f"{e['seconds'][f]:.2f}" if f in e["seconds"] else "" for f in fractions]
        exponent = "" if e["exponent"] is None else f"{e['exponent']:.2f}"
        budget = f"≤ {BUDGETS[stage]} s" if stage in BUDGETS else ""
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {e['peak_rss_mib']:.0f} | {exponent} | {budget} |")
    m = report["machine"]
    lines.append(f"\n{m['cpus']} CPUs; 1-minute load average between {m['load_during_run'][0]} and "
                 f"{m['load_during_run'][1]} during the stages.")
    return "\n".join(lines) + "\n"
