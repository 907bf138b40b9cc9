"""Many-to-one classification and one-to-many generation with the shared cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.lab.tasks import (DIGIT_NAMES, SequenceClassifier, TasksConfig, majority_batch, run,
                                  train_many_to_one, train_one_to_many)


def test_majority_labels_and_padding() -> None:
    x, lengths, y = majority_batch(200, 3, 9, torch.Generator().manual_seed(0))
    ones = x[..., 1].sum(1)
    assert torch.equal(y, (2 * ones > lengths).long())
    assert (x.sum(-1).sum(1) == lengths).all()  # one one-hot per step, zeros after the end


@pytest.mark.parametrize("readout", ["last", "mean", "max"])
def test_readouts_ignore_padding(readout: str) -> None:
    model = SequenceClassifier("gru", 2, 8, 2, readout)
    x, lengths, _ = majority_batch(6, 3, 6, torch.Generator().manual_seed(1))
    padded = torch.cat([x, torch.randn(6, 4, 2)], dim=1)  # garbage after every sequence's end
    torch.testing.assert_close(model(x, lengths), model(padded, lengths))


def test_many_to_one_learns_majority() -> None:
    result = train_many_to_one(TasksConfig(steps=250, test_sequences=500), "gru", "last")
    assert result["accuracy"] >= 0.95


def test_one_to_many_spells_every_digit() -> None:
    result = train_one_to_many(TasksConfig(steps=200), "gru")
    assert result["outputs"] == list(DIGIT_NAMES)
    assert result["accuracy"] == 1.0


def test_run_writes_results_figure_and_html(tmp_path: Path) -> None:
    run(TasksConfig(cells=("rnn_tanh",), readouts=("mean",), steps=5, test_sequences=20), tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["tables"]) == {"many-to-one (held-out accuracy)", "one-to-many (names spelled exactly)"}
    assert (tmp_path / "tasks.png").stat().st_size > 0
    assert "<table" in (tmp_path / "tasks.html").read_text()


def test_bad_readout_is_named() -> None:
    with pytest.raises(ValueError, match="unknown readout 'final'"):
        TasksConfig(readouts=("final",))
