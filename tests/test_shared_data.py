"""Tests that read ``../shared`` never skip silently in CI: they go through one helper in ``conftest.py``,
which skips with a reason locally but fails under ``CI=true`` (where ``../shared`` is beside the checkout)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest
from conftest import REPO, SHARED, in_ci, missing_shared, require_shared, requires_shared, shared_available

SHARED_DATA = ("coco-mini", "chair/synonyms.txt")  # every ../shared path the tests read


def test_ci_has_the_shared_data() -> None:
    """Under CI=true the shared data must be there (naming what is missing); the helper looks beside the
    checkout, where CI puts it, and agrees with the file system."""
    missing = missing_shared(*SHARED_DATA)
    if in_ci():
        assert not missing, f"CI=true but ../shared lacks {', '.join(missing)} (looked in {SHARED})"
    assert SHARED == REPO.parent / "shared"
    assert missing == [name for name in SHARED_DATA if not (REPO.parent / "shared" / name).exists()]


@pytest.fixture
def empty_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``../shared`` for the helpers."""
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    return tmp_path


def outcome(check: Callable[[], object]) -> str:
    """How a check ended: ``"skip: <reason>"``, ``"fail: <message>"`` or ``"ran"`` (caught here, so that a
    skip where a failure is expected fails this test rather than skipping it)."""
    try:
        check()
    except pytest.skip.Exception as e:
        return f"skip: {e.msg}"
    except pytest.fail.Exception as e:
        return f"fail: {e.msg}"
    return "ran"


def set_ci(monkeypatch: pytest.MonkeyPatch, ci: bool) -> None:
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)


def test_missing_shared_data_skips_locally_with_its_name(empty_shared: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    set_ci(monkeypatch, False)
    assert missing_shared(*SHARED_DATA) == list(SHARED_DATA)
    assert not shared_available("coco-mini")
    assert outcome(lambda: require_shared(*SHARED_DATA)).startswith(
        "skip: ../shared lacks coco-mini, chair/synonyms.txt (looked in")


def test_missing_shared_data_fails_under_ci_with_its_name(empty_shared: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    set_ci(monkeypatch, True)
    (empty_shared / "coco-mini").mkdir()
    for check in (shared_available, require_shared):
        assert outcome(lambda: check(*SHARED_DATA)).startswith(
            "fail: CI=true but ../shared lacks chair/synonyms.txt (looked in")
    (empty_shared / "chair").mkdir()
    (empty_shared / "chair/synonyms.txt").write_text("person\n")
    assert shared_available(*SHARED_DATA)
    assert outcome(lambda: require_shared(*SHARED_DATA)) == "ran"  # all there: neither skips nor fails


@pytest.mark.parametrize(("ci", "expected"), [(False, "skip"), (True, "fail")])
def test_the_marker_is_checked_before_the_test_runs(empty_shared: Path, monkeypatch: pytest.MonkeyPatch,
                                                    ci: bool, expected: str) -> None:
    """``@requires_shared(...)`` is enforced by conftest's ``pytest_runtest_setup`` hook."""
    set_ci(monkeypatch, ci)
    mark = requires_shared("coco-mini").mark
    item = SimpleNamespace(iter_markers=lambda name: [mark] if name == mark.name else [])
    ended = outcome(lambda: conftest.pytest_runtest_setup(item))
    assert ended.startswith(f"{expected}: ") and "lacks coco-mini" in ended
    (empty_shared / "coco-mini").mkdir()
    assert outcome(lambda: conftest.pytest_runtest_setup(item)) == "ran"


def test_no_test_checks_shared_data_on_its_own() -> None:
    """Every test reaches ../shared through the helpers: a ``skipif`` or an ``exists``/``is_dir``/``is_file``
    test of a shared path elsewhere would skip silently in CI."""
    own_check = re.compile(r"skipif\([^)]*(SHARED|COCO_MINI|shared)"  # a skip decorator on a shared path
                           r"|(SHARED|COCO_MINI)\b[^\n]*\.(exists|is_dir|is_file)\(")  # or a hand-made test
    offenders = [f"{path.name}:{n}" for path in sorted((REPO / "tests").glob("*.py")) if path.name != "conftest.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if own_check.search(line)]
    assert not offenders, f"check ../shared with conftest's requires_shared/shared_available: {offenders}"
