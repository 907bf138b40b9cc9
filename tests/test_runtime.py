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


def test_fast_bf16_is_a_yes_or_no_on_this_cpu() -> None:
    assert isinstance(runtime.cpu_has_fast_bf16(), bool)
