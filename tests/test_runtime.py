"""Process settings for CPU speed, and the precision chosen for the machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from captioning.cli.fit import cli_main
from captioning.cli.vqa import vqa_cli_main
from captioning.core import runtime
from captioning.core.runtime import keep_freed_memory
from conftest import REPO, shapes_overrides


def test_keep_freed_memory_takes_effect_with_glibc() -> None:
    took = keep_freed_memory()
    uses_glibc = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())
    assert took is uses_glibc


@pytest.mark.parametrize("fast_bf16", [False, True])
def test_unset_precision_is_the_machines_fastest_and_a_set_one_is_obeyed(fast_bf16: bool, monkeypatch,
                                                                           tiny_shapes: Path) -> None:
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    args = ["--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
            "--trainer.accelerator=cpu"]
    assert runtime.fast_precision("cpu") == ("bf16-mixed" if fast_bf16 else "32-true")
    cli = cli_main(args, run=False)  # configs/shapes.yaml leaves trainer.precision unset
    assert cli.trainer.precision == ("bf16-mixed" if fast_bf16 else "32-true")
    cli = vqa_cli_main(["--config", str(REPO / "configs/vqa/shapes.yaml"), "--trainer.accelerator=cpu",
                        f"--data.init_args.root={tiny_shapes}", "--data.init_args.num_train=4",
                        "--data.init_args.num_val=2", "--data.init_args.num_test=2"], run=False)
    assert cli.trainer.precision == ("bf16-mixed" if fast_bf16 else "32-true")
    assert cli_main([*args, "--trainer.precision=32-true"], run=False).trainer.precision == "32-true"


def test_training_commands_let_onednn_keep_more_kernels_unless_the_environment_says(monkeypatch,
                                                                                   tiny_shapes: Path) -> None:
    """Batches of varying shape (VQA's question count) would be compiled again at every step with oneDNN's 1,024
    cached kernels (runtime.keep_compiled_kernels); a capacity set in the environment is obeyed."""
    import os

    monkeypatch.delenv(runtime.ONEDNN_CACHE_VARIABLE, raising=False)
    cli_main(["--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes),
              "--trainer.accelerator=cpu"], run=False)
    assert os.environ[runtime.ONEDNN_CACHE_VARIABLE] == "8192"
    monkeypatch.setenv(runtime.ONEDNN_CACHE_VARIABLE, "2048")
    vqa_cli_main(["--config", str(REPO / "configs/vqa/shapes.yaml"), "--trainer.accelerator=cpu",
                  f"--data.init_args.root={tiny_shapes}", "--data.init_args.num_train=4",
                  "--data.init_args.num_val=2", "--data.init_args.num_test=2"], run=False)
    assert os.environ[runtime.ONEDNN_CACHE_VARIABLE] == "2048"
    assert runtime.keep_compiled_kernels(100) == 2048
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        runtime.keep_compiled_kernels(0)


def test_fast_bf16_is_a_yes_or_no_on_this_cpu() -> None:
    assert isinstance(runtime.cpu_has_fast_bf16(), bool)


def test_fused_lstm_under_bf16_autocast_runs_in_fp32_where_the_cpu_has_no_bf16(monkeypatch) -> None:
    """oneDNN cannot build a bf16 LSTM on an AVX2-only CPU; there the fused LSTM leaves autocast and runs in fp32
    (the same numbers as without autocast), so configs that ask for bf16 still train on such a machine."""
    import torch

    from captioning.models import cells

    monkeypatch.setattr(cells, "cpu_has_fast_bf16", lambda: False)
    torch.manual_seed(0)
    rnn = cells.build_rnn("lstm", 6, 8, num_layers=2)
    x = torch.randn(3, 5, 6)  # (B, T, D)
    state = {"h": torch.randn(3, 2, 8), "c": torch.randn(3, 2, 8)}  # (B, L, H)
    want, want_state = cells.run_fused("lstm", rnn, x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_state = cells.run_fused("lstm", rnn, x, state)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_state["c"], want_state["c"])


def test_data_loaders_start_their_workers_from_a_fork_server(tiny_shapes: Path, tmp_path: Path) -> None:
    """Forked workers of a threaded process can hang at start (runtime.worker_context); every loader with workers
    starts them from a single-threaded fork server, and one without workers has no start method."""
    from captioning.data.images import ImageRef, image_loader

    assert runtime.worker_context(0) is None and runtime.worker_context(2) == "forkserver"  # Linux
    args = ["--config", str(REPO / "configs/shapes.yaml"), *shapes_overrides(tiny_shapes), "--trainer.accelerator=cpu"]
    for workers, context in ((0, None), (1, "forkserver")):
        data = cli_main([*args, f"--data.init_args.num_workers={workers}"], run=False).datamodule
        data.setup("fit")
        for loader in (data.train_dataloader(), data.val_dataloader()):
            assert (loader.multiprocessing_context and loader.multiprocessing_context.get_start_method()) == context
            assert len(next(iter(loader))) > 0  # the workers start and read
    image = next((tiny_shapes / "test").glob("*.png"))
    loader = image_loader([ImageRef(image.name, image)], 16, batch_size=1, num_workers=1)
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
