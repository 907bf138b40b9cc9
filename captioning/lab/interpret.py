"""Interpretable cells: hidden units of a trained char model that track the structure of code.

A character model is trained on this repository's source; it then reads held-out text one step at a time
(:func:`captioning.models.cells.cell_step`, so every layer's ``h`` and, for an LSTM, ``c`` is recorded) and
every unit's activation is correlated with structural signals: inside a string, position since the last
newline, indentation. The best unit per signal is shown as text coloured by its activation.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from captioning.core.io import write_json_atomic
from captioning.lab.config import as_dict
from captioning.lab.lm import CharLM, TrainConfig, train_lm
from captioning.lab.render import coloured_html, coloured_png, figure, save_figure, write_html
from captioning.lab.text import char_vocab, encode, load_corpus, split_text
from captioning.models.cells import cell_step, input_projection

SIGNALS = ("in_string", "line_position", "indent")
QUICK = MappingProxyType({"steps": 150, "analyse_chars": 3000})  # the --quick preset


@dataclass(frozen=True)
class InterpretConfig(TrainConfig):
    """Settings: the char model's :class:`TrainConfig` fields, and these.

    Args:
        corpus: ``source`` (this package's Python files) or the path of a UTF-8 text file.
        val_fraction: Tail of the corpus held out; the units are analysed on it.
        analyse_chars: Held-out characters the activations are recorded on.
        show_chars: Characters rendered in the coloured pictures.
        top_k: Units reported per signal.
    """

    steps: int = 600
    corpus: str = "source"
    val_fraction: float = 0.1
    analyse_chars: int = 6000
    show_chars: int = 1500
    top_k: int = 3


def string_mask(text: str) -> np.ndarray:
    """1 after reading a character that leaves the reader inside a Python string literal, else 0, (N,).

    Handles single, double and triple quotes, backslash escapes and ``#`` comments; a single-quoted string
    ends at a newline. The opening quote counts as inside, the closing one as outside.
    """
    out = np.zeros(len(text))
    i, quote, comment = 0, "", False
    while i < len(text):
        ch = text[i]
        if comment:
            comment = ch != "\n"
        elif not quote:
            if ch == "#":
                comment = True
            elif ch in "'\"":
                quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else ch
                out[i:i + len(quote)] = 1
                i += len(quote)
                continue
        elif ch == "\\":
            out[i:i + 2] = 1
            i += 2
            continue
        elif text.startswith(quote, i):
            i, quote = i + len(quote), ""
            continue
        elif ch == "\n" and len(quote) == 1:
            quote = ""
        else:
            out[i] = 1
        i += 1
    return out


def line_signals(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Characters since the last newline, and leading spaces of the current line read so far, (N,) each."""
    position, indent = np.zeros(len(text)), np.zeros(len(text))
    col, lead, leading = 0, 0, True
    for i, ch in enumerate(text):
        if ch == "\n":
            col, lead, leading = 0, 0, True
        else:
            col += 1
            leading = leading and ch == " "
            lead += leading
        position[i], indent[i] = col, lead
    return position, indent


def syntax_signals(text: str) -> dict[str, np.ndarray]:
    """Every signal of :data:`SIGNALS` for ``text``, one value per character."""
    position, indent = line_signals(text)
    return {"in_string": string_mask(text), "line_position": position, "indent": indent}


def rank_units(activations: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Units ordered by the magnitude of their Pearson correlation with ``signal``.

    Args:
        activations: One column per unit, (N, U).
        signal: One value per row, (N,).

    Returns:
        Unit indices, best first, and their correlations (signed), (U,) each.
    """
    a = activations - activations.mean(axis=0)  # (N, U)
    s = signal - signal.mean()  # (N,)
    denom = np.sqrt((a ** 2).sum(axis=0) * (s ** 2).sum()) + 1e-12
    r = (a * s[:, None]).sum(axis=0) / denom  # (U,)
    order = np.argsort(-np.abs(r), kind="stable")
    return order, r[order]


@torch.no_grad()
def record_activations(model: CharLM, ids: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """Every unit's activation after every character, stepping each layer with :func:`cell_step`.

    Args:
        model: A trained language model.
        ids: Character ids, (N,).

    Returns:
        Activations (N, U) and unit names (``h<layer>.<unit>``, and ``c<layer>.<unit>`` for an LSTM).
    """
    rnn, n_layers, hidden = model.rnn, model.rnn.num_layers, model.rnn.hidden_size
    x = model.inputs(ids[None])[0]  # (N, E)
    columns, names = [], []
    for layer in range(n_layers):
        pre = input_projection(rnn, layer, x)  # (N, G): every step's input term at once
        h = x.new_zeros(1, hidden)  # (1, H)
        c = torch.zeros_like(h) if model.cell == "lstm" else None
        hs, cs = [], []
        for t in range(pre.size(0)):
            h, c = cell_step(model.cell, rnn, layer, pre[t:t + 1], h, c)
            hs.append(h[0])
            cs.append(c[0] if c is not None else None)
        x = torch.stack(hs)  # (N, H): the next layer's input
        columns.append(x)
        names += [f"h{layer}.{u}" for u in range(hidden)]
        if c is not None:
            columns.append(torch.stack(cs))
            names += [f"c{layer}.{u}" for u in range(hidden)]
    return torch.cat(columns, dim=1).numpy(), names


def find_units(activations: np.ndarray, names: list[str], signals: dict[str, np.ndarray], top_k: int) -> dict:
    """The ``top_k`` units per signal with their correlations, and the best unit's column index."""
    found = {}
    for signal, values in signals.items():
        order, r = rank_units(activations, values)
        found[signal] = {"best_index": int(order[0]),
                         "units": [{"unit": names[i], "r": float(c)} for i, c in zip(order[:top_k], r[:top_k])]}
    return found


def _plot_traces(text: str, activations: np.ndarray, signals: dict, found: dict, path: Path) -> None:
    """Per signal: the signal and its best unit's activation over the first characters."""
    n = min(len(text), 400)
    fig, ax = figure(len(signals), 1, figsize=(12, 2.2 * len(signals)), squeeze=False)
    for a, (name, values) in zip(ax[:, 0], signals.items()):
        best = found[name]["units"][0]
        unit = activations[:n, found[name]["best_index"]]
        a.plot(values[:n] / (np.abs(values[:n]).max() or 1), label=f"{name} (scaled)", color="k", lw=1)
        a.plot(unit / (np.abs(unit).max() or 1), label=f"unit {best['unit']} (r = {best['r']:+.2f}, scaled)",
               color="tab:red", lw=1)
        a.legend(fontsize=7, loc="upper right")
        a.set_xlim(0, n)
    ax[-1, 0].set_xlabel("held-out character")
    fig.tight_layout()
    save_figure(fig, path)


def _render(cfg: InterpretConfig, text: str, activations: np.ndarray, found: dict, out: Path) -> None:
    """For each signal, the held-out text coloured by its best unit: one HTML page and a PNG per signal."""
    shown = text[: cfg.show_chars]
    sections = []
    for name, info in found.items():
        values = activations[: len(shown), info["best_index"]]
        best = info["units"][0]
        units = ", ".join(f"{u['unit']} (r = {u['r']:+.3f})" for u in info["units"])
        sections.append((f"{name}: unit {best['unit']}",
                         f"<p>top units: {html.escape(units)}</p>" + coloured_html(shown, values.tolist())))
        coloured_png(out / f"unit_{name}.png", shown, values.tolist(), max_cols=90,
                     title=f"{name}: unit {best['unit']}, r = {best['r']:+.2f} (red positive, blue negative)")
    write_html(out / "interpret.html", "char LM units coloured by activation", sections)


def run(cfg: InterpretConfig, out: Path) -> dict:
    """Trains a char model, finds the units that track each signal, and writes results, HTML and PNGs."""
    out = Path(out)
    corpus = load_corpus(cfg.corpus)
    train_text, val_text = split_text(corpus, cfg.val_fraction)
    vocab = char_vocab(train_text)
    model, history = train_lm(cfg, encode(vocab, train_text), len(vocab), encode(vocab, val_text))
    text = val_text[: cfg.analyse_chars]
    activations, names = record_activations(model, encode(vocab, text))
    start = len(train_text)  # signals scanned from the corpus start: the held-out part may begin inside a string
    signals = {k: v[start:start + len(text)] for k, v in syntax_signals(corpus).items()}
    found = find_units(activations, names, signals, cfg.top_k)
    _plot_traces(text, activations, signals, found, out / "interpret.png")
    _render(cfg, text, activations, found, out)
    rows = [{"signal": s, "rank": k + 1, "unit": u["unit"], "r": u["r"]}
            for s, info in found.items() for k, u in enumerate(info["units"])]
    results = {"config": as_dict(cfg), "history": history, "analysed_chars": len(text),
               "units": {s: info["units"] for s, info in found.items()}, "tables": {"units by |r|": rows}}
    write_json_atomic(out / "results.json", results)
    return results
