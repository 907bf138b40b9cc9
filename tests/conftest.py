"""Shared fixtures: a tiny generated shapes dataset and tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from captioning.data.shapes import generate_shapes

TINY = {"num_train": 16, "num_val": 6, "num_test": 6, "image_size": 32}
SHARED = Path(__file__).resolve().parents[2] / "shared"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> Path:
    """A 16/6/6-image shapes dataset of 32×32 scenes, generated once per test session."""
    return generate_shapes(tmp_path_factory.mktemp("tiny_shapes") / "shapes", **TINY)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def shapes_overrides(root: Path) -> list[str]:
    """LightningCLI arguments that point a shapes config at the tiny dataset."""
    return [f"--data.init_args.root={root}", f"--data.init_args.num_train={TINY['num_train']}",
            f"--data.init_args.num_val={TINY['num_val']}", f"--data.init_args.num_test={TINY['num_test']}",
            f"--data.init_args.image_size={TINY['image_size']}", "--data.init_args.batch_size=4",
            "--data.init_args.eval_batch_size=4", "--data.init_args.num_workers=0"]


def last_checkpoint(trainer) -> str:
    """The checkpoint of the latest weights (the config's ``filename: last`` ModelCheckpoint)."""
    return next(cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.filename == "last")


def load_script(name: str) -> ModuleType:
    """A file of ``scripts/`` (e.g. ``"main.py"``) imported as a module, so tests can call its functions."""
    spec = importlib.util.spec_from_file_location(Path(name).stem, REPO / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
