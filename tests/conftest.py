"""Shared fixtures: a tiny generated shapes dataset and tiny models; the ``../shared`` data helpers."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from captioning.data.shapes import generate_shapes

TINY = {"num_train": 16, "num_val": 6, "num_test": 6, "image_size": 32}
SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the checkout (read-only in CI)
REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``), where ``../shared`` is always beside the checkout."""
    return os.environ.get("CI") == "true"


def missing_shared(*names: str) -> list[str]:
    """The paths among ``names`` (relative to ``../shared``, e.g. ``"chair/synonyms.txt"``) that are absent."""
    return [name for name in names if not (SHARED / name).exists()]


def shared_available(*names: str) -> bool:
    """Whether every ``../shared`` path in ``names`` exists; under ``CI=true`` a missing one fails the test
    (naming it) instead, so no shared-data test or branch is skipped silently in CI."""
    missing = missing_shared(*names)
    if missing and in_ci():
        pytest.fail(f"CI=true but ../shared lacks {', '.join(missing)} (looked in {SHARED})", pytrace=False)
    return not missing


def require_shared(*names: str) -> None:
    """Skips the running test, with the reason, when a ``../shared`` path is absent (fails under ``CI=true``)."""
    if not shared_available(*names):
        pytest.skip(f"../shared lacks {', '.join(missing_shared(*names))} (looked in {SHARED})")


def requires_shared(*names: str) -> pytest.MarkDecorator:
    """Marks a test that reads these ``../shared`` paths: :func:`require_shared` runs before its fixtures."""
    return pytest.mark.requires_shared(*names)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "requires_shared(*names): the test reads these paths under ../shared")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    for mark in item.iter_markers("requires_shared"):
        require_shared(*mark.args)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> Path:
    """A 16/6/6-image shapes dataset of 32×32 scenes, generated once per test session."""
    return generate_shapes(tmp_path_factory.mktemp("tiny_shapes") / "shapes", **TINY)


@pytest.fixture()
def one_thread():
    """Tiny tensors: one thread avoids the overhead of waking others (many times faster on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
