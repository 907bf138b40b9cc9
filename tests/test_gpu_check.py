"""scripts/gpu_check.sh: its CPU dry run writes the summary with the GPU-only steps skipped and the reasons;
on a machine without the wheels or without CUDA, the GPU run says what is wrong. The wheel dependency
closure that scripts/gpu_wheels.sh --verify relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
STEPS = ["wheels", "imports", "gpu_info", "pytest_gpu", "benchmark", "matmul_bf16", "main"]


def _check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"
    done = subprocess.run(["bash", "scripts/gpu_check.sh", *args, str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable})
    summary = json.loads((out / "gpu_check.json").read_text())
    return done, summary


def test_cpu_dry_run_skips_the_gpu_only_steps_and_summarizes_the_rest(tmp_path: Path) -> None:
    done, summary = _check(tmp_path, "--cpu")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary["mode"] == "cpu" and summary["passed"] is True and summary["budget_seconds"] == 480
    assert [s["name"] for s in summary["steps"]] == STEPS
    for step in summary["steps"]:
        assert set(step) == {"name", "status", "seconds", "reason", "command", "figures"}
        assert step["seconds"] >= 0 and (step["status"] == "passed") == (step["reason"] is None)
    steps = {s["name"]: s for s in summary["steps"]}
    for name in ("gpu_info", "matmul_bf16"):  # GPU only
        assert steps[name]["status"] == "skipped" and steps[name]["reason"].startswith("--cpu dry run")
    assert steps["wheels"]["status"] == "skipped" and "installed here are used" in steps["wheels"]["reason"]
    assert {s["name"] for s in summary["steps"] if s["status"] == "passed"} == {"imports", "pytest_gpu", "benchmark",
                                                                                 "main"}
    assert steps["imports"]["figures"]["missing"] == {} and steps["imports"]["figures"]["versions"]["torch"]
    tests = steps["pytest_gpu"]["figures"]  # every GPU test is collected and skips here, with the reason
    assert tests["tests"] >= 10 and tests["skipped"] == tests["tests"] and tests["passed"] == tests["failed"] == 0
    assert any("CUDA" in reason for reason in tests["skip_reasons"])
    bench = steps["benchmark"]["figures"]
    assert bench["device"] == "cpu" and bench["workload"] == "tiny" and bench["train_tokens_per_s"] > 0
    assert bench["greedy_captions_per_s"] > 0 and bench["same_captions_as_baseline"]["greedy"] is True
    main = steps["main"]["figures"]
    assert main["test"]["num_images"] == 4 and 0 <= main["test"]["Bleu_4"] <= 1 and main["test"]["backend"] == "python"
    assert main["data_and_training_s"] >= 0
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"gpu_check.json", "gpu_check.log", "benchmark.json", "pytest_gpu.xml",
                                               "main_metrics.json"}  # few files: the device returns at most 8
    log = (out / "gpu_check.log").read_text()
    assert all(f"== {name}" in log for name in STEPS) and "gpu_check (cpu mode)" in done.stdout


def test_gpu_run_without_wheels_or_cuda_fails_and_says_why(tmp_path: Path) -> None:
    import torch

    done, summary = _check(tmp_path, "--wheels", str(tmp_path / "no-wheels"), "--only", "gpu_info")
    assert done.returncode == 1
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["wheels"]["status"] == "failed" and "bash scripts/gpu_wheels.sh" in steps["wheels"]["reason"]
    if not torch.cuda.is_available():
        assert steps["gpu_info"]["status"] == "failed" and "no CUDA device" in steps["gpu_info"]["reason"]
    assert all(steps[name]["reason"] == "not selected (--only gpu_info)" for name in STEPS if name not in
               ("wheels", "gpu_info"))
    assert summary["passed"] is False


def test_unknown_step_is_a_usage_error() -> None:
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--only", "training"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "unknown step training" in done.stderr


def _wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    """A minimal wheel holding only its METADATA."""
    import zipfile

    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires), "\nlong description\nRequires-Dist: not-a-header\n"])
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def test_wheel_closure_follows_extras_and_markers_and_names_what_is_missing(tmp_path: Path, capsys) -> None:
    gpu_check = load_script("gpu_check.py")
    wheels, machine, project = tmp_path / "whl", tmp_path / "machine.txt", tmp_path / "pyproject.toml"
    wheels.mkdir()
    _wheel(wheels, "alpha", "1.0", "beta>=1", "gamma[fast]", 'winonly; sys_platform == "win32"',
           'delta; extra == "sig"', 'old; python_version < "3.9"')
    _wheel(wheels, "beta", "1.2")
    _wheel(wheels, "gamma", "1.0", 'epsilon>=2; extra == "fast"')
    machine.write_text("# name [version]\nepsilon 2.5\nzeta\n")
    project.write_text('[project]\nname = "x"\ndependencies = ["alpha[sig]>=1", "zeta>=4"]\n')
    args = ["closure", "--wheels", str(wheels), "--machine", str(machine), "--project", str(project),
            "--provided-out", str(tmp_path / "provided.txt")]
    assert gpu_check.main(args) == 1  # alpha[sig] needs delta: neither a wheel nor on the machine
    assert 'alpha 1.0 needs delta; extra == "sig" (nowhere)' in capsys.readouterr().err
    _wheel(wheels, "delta", "0.1")
    assert gpu_check.main(args) == 0
    assert (tmp_path / "provided.txt").read_text() == "epsilon\nzeta\n"  # via gamma[fast] and the project
    machine.write_text("epsilon 1.0\nzeta\n")  # a recorded version outside the specifier is unmet
    assert gpu_check.main(args) == 1 and "gamma 1.0 needs epsilon>=2" in capsys.readouterr().err
    assert gpu_check.main([*args, "--exclude", "epsilon"]) == 0
