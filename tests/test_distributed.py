"""Under 2-process DDP (gloo, CPU), validation metrics cover every image once, equal to one process."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from captioning.data.shapes import generate_shapes
from conftest import TINY, last_checkpoint, shapes_overrides

REPO = Path(__file__).resolve().parents[1]
FIVE_VAL = ["--data.init_args.num_val=5"]  # 5 images on 2 ranks: the sampler pads one rank with a repeat


def _validate(root: Path, ckpt: str, out: Path, devices: int) -> dict[str, float]:
    args = [sys.executable, "-m", "captioning.cli", "validate", "--config", str(REPO / "configs/shapes.yaml"),
            *shapes_overrides(root), *FIVE_VAL, f"--ckpt_path={ckpt}", "--trainer.accelerator=cpu",
            f"--trainer.devices={devices}", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false",
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={out}"]
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(next(out.rglob("metrics.csv")).open()))
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def test_two_process_validation_equals_one_process(tmp_path: Path) -> None:
    from captioning.cli import cli_main

    root = generate_shapes(tmp_path / "shapes", **{**TINY, "num_val": 5})
    cli = cli_main(["fit", "--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(root), *FIVE_VAL,
                    f"--trainer.default_root_dir={tmp_path / 'fit'}",
                    "--trainer.max_epochs=1", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false"])
    ckpt = last_checkpoint(cli.trainer)
    one = _validate(root, ckpt, tmp_path / "one", devices=1)
    two = _validate(root, ckpt, tmp_path / "two", devices=2)
    assert set(one) >= {"val/Bleu_4", "val/CIDEr"}
    assert one == pytest.approx(two, abs=1e-9)
