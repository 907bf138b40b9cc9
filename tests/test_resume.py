"""A run killed mid-epoch and resumed with ``--ckpt_path last`` ends exactly like an uninterrupted run;
checkpoint writes are atomic; a non-finite loss stops training naming the step."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as L
import torch

from captioning.cli.fit import cli_main
from captioning.training.resume import AtomicCheckpointIO
from conftest import shapes_overrides

REPO = Path(__file__).resolve().parents[1]
KILL_AT = 7  # 4 steps per epoch: killed in epoch 1 after step 7; the last checkpoint is step 6 (mid-epoch)


class Kill(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == KILL_AT:
            raise KeyboardInterrupt(f"killed at step {KILL_AT}")


STEP_CHECKPOINTS = """
trainer:
  callbacks:
    - {class_path: captioning.training.resume.LastCheckpoint, init_args: {every_n_train_steps: 3}}
    - class_path: captioning.training.resume.ReseedEveryStep
"""


def _args(root: Path, out: Path) -> list[str]:
    (out / "steps.yaml").parent.mkdir(parents=True, exist_ok=True)
    (out / "steps.yaml").write_text(STEP_CHECKPOINTS)
    return ["--config", str(REPO / "configs/shapes.yaml"), "--config", str(out / "steps.yaml"),
            *shapes_overrides(root), f"--trainer.default_root_dir={out}", "--trainer.max_epochs=2",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--model.decoder.init_args.dropout=0.3"]  # randomness in every step must be replayed too


def _final(cli) -> tuple[dict, dict]:
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    return cli.model.state_dict(), metrics


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tiny_shapes: Path, tmp_path: Path) -> None:
    whole = cli_main(["fit", *_args(tiny_shapes, tmp_path / "whole")])
    killed = cli_main(_args(tiny_shapes, tmp_path / "killed"), run=False)
    killed.trainer.callbacks.append(Kill())
    with pytest.raises(SystemExit):  # Lightning turns the interrupt into a clean exit
        killed.trainer.fit(killed.model, datamodule=killed.datamodule)
    last = torch.load(next((tmp_path / "killed").rglob("last.ckpt")), weights_only=True)
    assert last["global_step"] == 6  # mid-epoch: 2 of epoch 1's 4 batches are done
    resumed = cli_main(["fit", *_args(tiny_shapes, tmp_path / "killed"), "--ckpt_path=last"])
    assert resumed.trainer.global_step == whole.trainer.global_step == 8
    (w_state, w_metrics), (r_state, r_metrics) = _final(whole), _final(resumed)
    for name, weight in w_state.items():
        assert torch.equal(r_state[name], weight), name
    assert w_metrics and w_metrics == r_metrics


def test_a_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def dies_mid_write(obj, f, *args, **kwargs) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_non_finite_loss_stops_training_naming_the_step(tiny_shapes: Path, tmp_path: Path) -> None:
    cli = cli_main(_args(tiny_shapes, tmp_path), run=False)
    torch.nn.init.constant_(cli.model.captioner.decoder.out.bias, float("nan"))
    with pytest.raises(FloatingPointError, match="loss is nan at global step 0"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
