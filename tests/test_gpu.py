"""The GPU path: cuDNN teacher forcing, decoding, mixed precision, torch.compile and `captioning caption` on CUDA.

Every test is marked ``gpu`` and skips where no CUDA device is visible; ``scripts/gpu_check.sh`` runs them
on a GPU machine (``python -m pytest -m gpu tests/test_gpu.py``). fp32 comparisons switch TF32 off (cuBLAS
and cuDNN would otherwise round matrix products to a 10-bit mantissa), so the tolerances below are fp32's.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from caption_helpers import tiny_checkpoint
from captioning.cli.caption import main as caption_main
from captioning.cli.fit import cli_main
from captioning.models.decoding import beam_search, greedy
from captioning.models.cells import CELLS
from captioning.models.decoder import INJECTIONS, RNNDecoder
from conftest import REPO, shapes_overrides

CUDA = torch.device("cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA device (scripts/gpu_check.sh on a GPU machine)")]
V, D = 30, 12
FP32 = dict(rtol=1e-4, atol=1e-5)  # fp32 without TF32: summation order alone differs between kernels


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 matrix products and cuDNN kernels in full fp32 (no TF32) for the duration of a test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _decoder(cell: str, injection: str = "every_step", dropout: float = 0.3) -> RNNDecoder:
    return RNNDecoder(V, D, embed_dim=16, hidden_dim=32, cell=cell, num_layers=2, dropout=dropout,
                      injection=injection)


def _batch(b: int = 6, t: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.randn(b, D)  # (B, D)
    tokens = torch.randint(4, V, (b, t))  # (B, T)
    tokens[:, 0] = 1
    return v, tokens


def _stepped(dec: RNNDecoder, v: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits by ``decoder.step`` token by token (the decoding path), (B, T, V)."""
    state, out = dec.init_state(v), []
    for t in range(tokens.size(1)):
        logits, state = dec.step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


def _weighted_sum(logits: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient reaches every logit with a different weight."""
    return (logits * torch.linspace(-1, 1, logits.size(-1), device=logits.device)).sum()


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_cudnn_teacher_forcing_equals_stepping_and_the_cpu(cell: str, injection: str) -> None:
    assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
    cpu = _decoder(cell, injection).eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    v, tokens = _batch()
    with torch.no_grad():
        fused = gpu(v.to(CUDA), tokens.to(CUDA))  # one cuDNN call over the sequence  # (B, T, V)
        stepped = _stepped(gpu, v.to(CUDA), tokens.to(CUDA))
        on_cpu = cpu(v, tokens)
    assert fused.device.type == "cuda" and fused.dtype == torch.float32
    torch.testing.assert_close(stepped, fused, **FP32)
    torch.testing.assert_close(fused.cpu(), on_cpu, **FP32)


@pytest.mark.parametrize("cell", CELLS)
def test_cudnn_gradients_equal_stepping_gradients(cell: str) -> None:
    dec = _decoder(cell, dropout=0.0).to(CUDA).train()  # cuDNN's RNN backward needs training mode
    v, tokens = (x.to(CUDA) for x in _batch())
    v.requires_grad_(True)
    grads = []
    for forward in (dec, lambda v, tokens: _stepped(dec, v, tokens)):
        grads.append(torch.autograd.grad(_weighted_sum(forward(v, tokens)), [v, *dec.parameters()]))
    for fused, stepped in zip(*grads):
        torch.testing.assert_close(fused, stepped, **FP32)


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_and_beam_captions_on_the_gpu_equal_the_cpus(cell: str) -> None:
    cpu = _decoder(cell).eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    v = torch.randn(16, D)
    g_cpu, g_gpu = greedy(cpu, v, max_len=12), greedy(gpu, v.to(CUDA), max_len=12)
    assert g_gpu.tokens.device.type == "cuda"
    assert torch.equal(g_gpu.tokens.cpu(), g_cpu.tokens)
    torch.testing.assert_close(g_gpu.scores.cpu(), g_cpu.scores, rtol=1e-4, atol=1e-4)
    b_cpu = beam_search(cpu, v, beam_size=4, max_len=12, alpha=0.7, n_best=2)
    b_gpu = beam_search(gpu, v.to(CUDA), beam_size=4, max_len=12, alpha=0.7, n_best=2)
    assert torch.equal(b_gpu.tokens.cpu(), b_cpu.tokens)  # (B, n_best, T): batched over images × beams
    torch.testing.assert_close(b_gpu.scores.cpu(), b_cpu.scores, rtol=1e-4, atol=1e-4)


def test_compiled_decoder_gives_the_same_logits_and_gradients() -> None:
    dec = _decoder("lstm", dropout=0.0).to(CUDA).train()
    compiled = copy.deepcopy(dec)
    compiled.compile()  # what `--model.compile true` does to the decoder (nn.Module.compile)
    v, tokens = (x.to(CUDA) for x in _batch())
    results = []
    for module in (dec, compiled):
        logits = module(v, tokens)  # (B, T, V)
        results.append((logits.detach(), torch.autograd.grad(_weighted_sum(logits), list(module.parameters()))))
    torch.testing.assert_close(results[1][0], results[0][0], **FP32)
    for a, b in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(a, b, **FP32)


class LossHistory(Callback):
    """Records the training loss of every optimizer step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_fit_has_finite_falling_loss(precision: str, tiny_shapes: Path, tmp_path: Path) -> None:
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cli = cli_main(["--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=gpu", "--trainer.devices=1",
                    f"--trainer.precision={precision}", "--trainer.max_epochs=4", "--trainer.limit_val_batches=1",
                    "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                    "--trainer.enable_model_summary=false", "--model.optimizer.init_args.lr=0.01",
                    "--model.lr_scheduler.init_args.warmup_steps=0"], run=False)
    history = LossHistory()
    cli.trainer.callbacks.append(history)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    losses = history.losses
    assert len(losses) == 16  # 4 epochs × 16 images / batch 4
    assert all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert next(cli.model.parameters()).device.type == "cuda"
    assert cli.trainer.precision == precision
    assert math.isfinite(float(cli.trainer.logged_metrics["val/Bleu_4"]))  # validation decoded under autocast


@pytest.fixture()
def photos(tiny_shapes: Path, tmp_path: Path) -> Path:
    """Four scenes and two unreadable files: an empty one and a cut-off PNG."""
    root = tmp_path / "photos"
    root.mkdir()
    scenes = sorted((tiny_shapes / "test").glob("*.png"))[:4]
    for src in scenes:
        shutil.copy(src, root / src.name)
    (root / "empty.jpg").touch()
    (root / "cut.png").write_bytes(scenes[0].read_bytes()[:60])
    return root


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _caption(ckpt: Path, images: Path, output: Path, *extra: str) -> dict:
    return caption_main(["--checkpoint", str(ckpt), "--images", str(images), "--output", str(output),
                         "--batch-size", "3", "--num-workers", "0", "--no-progress", "--beam-size", "2", *extra])


def test_caption_command_on_cuda_lists_the_corrupt_files_and_captions_the_rest(photos: Path, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "cuda.jsonl"
    done = subprocess.run([sys.executable, "-m", "captioning.cli", "caption", "--checkpoint", str(ckpt),
                           "--images", str(photos), "--output", str(out), "--device", "cuda", "--beam-size", "2",
                           "--batch-size", "3", "--num-workers", "2", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "captioned 4 images" in done.stderr and "2 unreadable" in done.stderr
    rows = _rows(out)
    assert [r["file_name"] for r in rows] == sorted(p.name for p in photos.glob("*.png") if p.name != "cut.png")
    assert all(r["caption"] and isinstance(r["score"], float) for r in rows)
    errors = {e["file_name"]: e["error"] for e in _rows(tmp_path / "cuda.errors.jsonl")}
    assert errors.keys() == {"empty.jpg", "cut.png"} and errors["cut.png"].startswith("cannot decode")
    # In fp32 without TF32 (this process), the GPU captions the images exactly as the CPU does.
    _caption(ckpt, photos, tmp_path / "cpu.jsonl")
    _caption(ckpt, photos, tmp_path / "gpu.jsonl", "--device", "cuda")
    cpu_rows, gpu_rows = _rows(tmp_path / "cpu.jsonl"), _rows(tmp_path / "gpu.jsonl")
    assert [(r["file_name"], r["caption"]) for r in gpu_rows] == [(r["file_name"], r["caption"]) for r in cpu_rows]
    assert [r["score"] for r in gpu_rows] == pytest.approx([r["score"] for r in cpu_rows], abs=1e-4)
    # bf16 autocast on the GPU captions every readable image too.
    summary = _caption(ckpt, photos, tmp_path / "bf16.jsonl", "--device", "cuda", "--precision", "bf16")
    assert summary["captioned"] == 4 and summary["errors"] == 2
