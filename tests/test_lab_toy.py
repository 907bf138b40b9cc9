"""The hand-built RNN is exact on every binary sequence; a trained vanilla RNN learns the same task."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from captioning.lab.toy import (ToyConfig, accuracy, all_sequences, check_hand_built, hand_built_outputs, run,
                                targets, train_toy)


def test_all_sequences_enumerates_every_binary_sequence() -> None:
    x = all_sequences(3)
    assert x.shape == (8, 3)
    assert len({tuple(r) for r in x.tolist()}) == 8


def test_hand_built_rnn_is_exact_on_every_sequence_up_to_length_12() -> None:
    report = check_hand_built(12)
    assert report["sequences"] == sum(2 ** n for n in range(1, 13)) == 8190
    assert report["wrong"] == 0 and report["exact"]


def test_hand_built_hidden_state_is_current_previous_one() -> None:
    x = all_sequences(10)  # (1024, 10)
    y, h = hand_built_outputs(x)
    assert torch.equal(h[..., 0], x.float())
    assert torch.equal(h[:, 1:, 1], x[:, :-1].float()) and (h[:, 0, 1] == 0).all()
    assert (h[..., 2] == 1).all()
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_targets_need_both_current_and_previous() -> None:
    x = torch.tensor([[1, 1, 0, 1, 1, 1]])
    assert targets(x).tolist() == [[0, 1, 0, 0, 1, 1]]


def test_trained_vanilla_rnn_is_perfect_on_held_out_sequences() -> None:
    cfg = ToyConfig(cell="rnn_tanh", steps=150, test_sequences=500, test_len=48)
    model, history = train_toy(cfg)
    assert history[-1]["sequence_accuracy"] == 1.0  # longer held-out sequences than in training
    assert accuracy(model, all_sequences(12)) == (1.0, 1.0)


def test_run_writes_results_and_figure(tmp_path: Path) -> None:
    results = run(ToyConfig(max_len=6, steps=25, test_sequences=50), tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["hand_built"]["exact"] and saved["hand_built"]["sequences"] == 126
    assert results["tables"]["toy task"][0]["sequence_accuracy"] == 1.0
    assert (tmp_path / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
