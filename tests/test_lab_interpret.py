"""Interpretable cells: structural signals, the unit finder, and the coloured HTML/PNG rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from captioning.lab.interpret import (InterpretConfig, find_units, line_signals, rank_units, record_activations,
                                      run, string_mask, syntax_signals)
from captioning.lab.lm import CharLM
from captioning.lab.render import coloured_html, coloured_png, format_table


def _marks(text: str, values: np.ndarray) -> str:
    return "".join("|" if ch == "\n" else str(int(v)) for ch, v in zip(text, values))


def test_string_mask_handles_quotes_escapes_comments_and_docstrings() -> None:
    text = 'a = "x\\"y" # it\'s\nb = """d\ne""" + \'z\'\n'
    assert _marks(text, string_mask(text)) == "00001111100000000|00001111|1000000110|"


def test_line_position_and_indent() -> None:
    position, indent = line_signals("ab\n  c d\n")
    assert position.tolist() == [1, 2, 0, 1, 2, 3, 4, 5, 0]
    assert indent.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 0]


def test_finder_ranks_a_planted_unit_first() -> None:
    rng = np.random.default_rng(0)
    text = ("def f(x):\n    return 'a' + \"b\"\n" * 40)
    signals = syntax_signals(text)
    acts = rng.normal(size=(len(text), 50))
    acts[:, 17] = np.tanh(signals["in_string"] * 2 - 1) + 0.3 * rng.normal(size=len(text))
    acts[:, 31] = -0.1 * signals["line_position"] + 0.3 * rng.normal(size=len(text))  # anti-correlated
    order, r = rank_units(acts, signals["in_string"])
    assert order[0] == 17 and r[0] > 0.8
    found = find_units(acts, [f"u{i}" for i in range(50)], signals, top_k=2)
    assert found["in_string"]["units"][0]["unit"] == "u17"
    assert found["line_position"]["units"][0]["unit"] == "u31" and found["line_position"]["units"][0]["r"] < -0.8


def test_recorded_activations_match_the_fused_model() -> None:
    torch.manual_seed(0)
    model = CharLM(20, "lstm", hidden_size=6, num_layers=2, embed_dim=4)
    ids = torch.randint(4, 20, (30,))
    acts, names = record_activations(model, ids)
    assert acts.shape == (30, 4 * 6) and names[:2] == ["h0.0", "h0.1"] and names[-1] == "c1.5"
    top_h = model.rnn(model.inputs(ids[None]))[0][0].detach().numpy()  # (30, 6): last layer's h
    np.testing.assert_allclose(acts[:, 12:18], top_h, atol=1e-5)


def test_html_escapes_text_and_keeps_one_span_per_character() -> None:
    text = "a<b&\"c'\nd"
    out = coloured_html(text, [0.5, -1.0, 0.0, 1.0, 0.2, 0.3, -0.3, 0.0, 0.9])
    assert "&lt;" in out and "&amp;" in out and "&quot;" in out and "&#x27;" in out
    assert "<b" not in out and 'c\'' not in out
    assert out.count("<span") == 8  # the newline is kept as is


def test_png_is_written(tmp_path: Path) -> None:
    path = coloured_png(tmp_path / "unit.png", "x = 'a'\n  y", list(np.linspace(-1, 1, 11)), title="unit")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_format_table_aligns_columns() -> None:
    table = format_table([{"unit": "h0.1", "r": 0.123456}, {"unit": "c0.12", "r": -1.0}])
    assert table.splitlines() == ["unit   r     ", "h0.1   0.1235", "c0.12  -1    "]


def test_run_writes_html_and_pngs(tmp_path: Path) -> None:
    cfg = InterpretConfig(hidden_size=8, embed_dim=4, steps=2, seq_len=16, bptt=8, batch_size=4,
                          analyse_chars=300, show_chars=120, top_k=2)
    run(cfg, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["units"]) == {"in_string", "line_position", "indent"}
    page = (tmp_path / "interpret.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("<pre>") == 3
    for name in ("interpret.png", "unit_in_string.png", "unit_line_position.png", "unit_indent.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
