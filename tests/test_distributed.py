"""Under 2-process DDP (gloo, CPU), training and evaluation equal one process on the same data.

One optimizer step on 2 ranks × 8 images gives the same weights as one process on the 16 images (the
loss is normalized by the global token count); validate/test/predict cover every image once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioning.data.shapes import generate_shapes
from conftest import TINY, shapes_overrides

REPO = Path(__file__).resolve().parents[1]
FIVE_VAL = ["--data.init_args.num_val=5", "--data.init_args.num_test=5"]  # 5 on 2 ranks: one rank gets a repeat
ONE_STEP = ["--trainer.max_epochs=1", "--model.lr_scheduler=null", "--model.optimizer=torch.optim.SGD",
            "--model.optimizer.init_args.lr=0.5",  # plain SGD: the update is the gradient itself
            "--model.encoder.init_args.channels=[]"]  # no BatchNorm: per-rank batch statistics would differ


def _run(root: Path, out: Path, devices: int) -> dict:
    args = [sys.executable, str(REPO / "tests/ddp_worker.py"), str(out), "--config",
            str(REPO / "configs/shapes.yaml"), *shapes_overrides(root), *FIVE_VAL, *ONE_STEP,
            f"--data.init_args.batch_size={16 // devices}",  # one step over all 16 training images
            "--trainer.accelerator=cpu", f"--trainer.devices={devices}", "--trainer.precision=32-true",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={out}"]
    if devices > 1:  # worker processes on each rank too
        args += ["--trainer.strategy=ddp", "--data.init_args.num_workers=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out / "result.pt", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    root = generate_shapes(tmp / "shapes", **{**TINY, "num_val": 5, "num_test": 5})
    return _run(root, tmp / "one", devices=1), _run(root, tmp / "two", devices=2)


def test_one_step_on_two_ranks_equals_one_process_on_the_combined_batch(runs) -> None:
    one, two = runs
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["state"].keys() == two["state"].keys()
    moved = [k for k, w in one["state"].items() if not torch.equal(w, one["initial"][k])]
    assert "captioner.decoder.out.weight" in moved and "captioner.encoder.fc.1.weight" in moved
    for name, weight in one["state"].items():
        torch.testing.assert_close(two["state"][name], weight, rtol=1e-5, atol=1e-6, msg=name)
    assert one["fit_val"] and one["fit_val"] == pytest.approx(two["fit_val"], abs=1e-9)


def test_validate_test_predict_on_two_ranks_equal_one_process(runs) -> None:
    one, two = runs
    assert set(one["test"]) >= {"test/Bleu_4", "test/CIDEr"}
    for stage in ("validate", "test"):
        assert one[stage] == pytest.approx(two[stage], abs=1e-9), stage
    assert [p["image_id"] for p in one["predict"]] == [p["image_id"] for p in two["predict"]]  # each once
    assert len(one["predict"]) == 5
    assert [p["caption"] for p in one["predict"]] == [p["caption"] for p in two["predict"]]
