"""Many-to-one and one-to-many with the same recurrent cells.

* Many-to-one: is a variable-length binary sequence mostly ones? Read out from the last state (at each
  sequence's own length) or from the mean or max of all its states.
* One-to-many: from one input (a digit) generate its spelled-out name. The input sets ``h_0``; the name is
  decoded with :func:`captioning.models.decoding.greedy`, like a caption from an image.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.decoding import END, PAD, START, greedy
from captioning.core.io import write_json_atomic
from captioning.lab.config import as_dict, require_positive
from captioning.lab.render import figure, save_figure, write_html
from captioning.lab.text import char_vocab, decode, encode
from captioning.models.cells import build_rnn, check_cell, run_fused

READOUTS = ("last", "mean", "max")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
QUICK = MappingProxyType({"cells": ("rnn_tanh", "gru"), "steps": 200})  # the --quick preset


@dataclass(frozen=True)
class TasksConfig:
    """Settings of the task experiment.

    Args:
        cells: Cells to train on both tasks.
        readouts: Many-to-one readouts to compare: ``last``, ``mean`` or ``max`` of the states.
        hidden_size: Hidden units.
        min_len: Shortest many-to-one sequence.
        max_len: Longest training sequence.
        test_max_len: Longest held-out sequence (above ``max_len`` tests generalisation in length).
        steps: Training steps of each model (both tasks).
        batch_size: Many-to-one sequences per step.
        test_sequences: Held-out many-to-one sequences.
        lr: Adam learning rate.
        seed: Random seed.
    """

    cells: tuple[str, ...] = ("rnn_tanh", "lstm", "gru")
    readouts: tuple[str, ...] = ("last", "mean")
    hidden_size: int = 32
    min_len: int = 5
    max_len: int = 20
    test_max_len: int = 30
    steps: int = 400
    batch_size: int = 64
    test_sequences: int = 2000
    lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for cell in self.cells:
            check_cell(cell)
        bad = [r for r in self.readouts if r not in READOUTS]
        if bad:
            raise ValueError(f"unknown readout {bad[0]!r}; choose one of {', '.join(READOUTS)}")
        require_positive(self, "hidden_size", "min_len", "steps", "batch_size", "test_sequences", "lr")
        if not self.min_len <= self.max_len <= self.test_max_len:
            raise ValueError("need min_len <= max_len <= test_max_len")


class SequenceClassifier(nn.Module):
    """Many-to-one: a class from a whole sequence.

    Args:
        cell: One of :data:`captioning.models.cells.CELLS`.
        input_size: Width of each step's input.
        hidden_size: Hidden units.
        num_classes: Output classes.
        readout: ``last`` state (at each sequence's length), or ``mean``/``max`` over its states.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_classes: int, readout: str = "last") -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
        self.readout = readout
        self.rnn = build_rnn(check_cell(cell), input_size, hidden_size)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Class logits (B, C) of padded inputs (B, T, D) with true ``lengths`` (B,)."""
        out, _ = self.rnn(x)  # (B, T, H); steps past a length never affect earlier states
        valid = torch.arange(x.size(1), device=x.device) < lengths[:, None]  # (B, T)
        if self.readout == "last":
            state = out[torch.arange(x.size(0), device=x.device), lengths - 1]  # (B, H)
        elif self.readout == "mean":
            state = (out * valid[..., None]).sum(1) / lengths[:, None]
        else:
            state = out.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)
        return self.head(state)


def majority_batch(n: int, min_len: int, max_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random bit sequences as one-hot inputs (N, T, 2) zero-padded, lengths (N,), labels "more 1s than 0s" (N,)."""
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    bits = torch.randint(0, 2, (n, max_len), generator=generator)
    valid = torch.arange(max_len) < lengths[:, None]  # (N, T)
    x = F.one_hot(bits, 2).float() * valid[..., None]  # (N, T, 2)
    ones = (bits * valid).sum(1)
    return x, lengths, (2 * ones > lengths).long()


def train_many_to_one(cfg: TasksConfig, cell: str, readout: str) -> dict:
    """Trains a :class:`SequenceClassifier` on the majority task; returns its held-out accuracy and curve."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SequenceClassifier(cell, 2, cfg.hidden_size, 2, readout)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    held_out = torch.Generator().manual_seed(cfg.seed + 1)
    test = majority_batch(cfg.test_sequences, cfg.min_len, cfg.test_max_len, held_out)
    losses = []
    for _ in range(cfg.steps):
        x, lengths, y = majority_batch(cfg.batch_size, cfg.min_len, cfg.max_len, gen)
        loss = F.cross_entropy(model(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        accuracy = (model(test[0], test[1]).argmax(-1) == test[2]).float().mean().item()
    return {"cell": cell, "readout": readout, "accuracy": accuracy, "loss": losses}


class OneToMany(nn.Module):
    """One-to-many: a sequence of tokens generated from one input vector, which sets ``h_0``.

    Args:
        cell: One of :data:`captioning.models.cells.CELLS`.
        input_size: Width of the input vector.
        vocab_size: Output tokens including the four special tokens.
        hidden_size: Hidden units.
        embed_dim: Width of the token embedding.
    """

    def __init__(self, cell: str, input_size: int, vocab_size: int, hidden_size: int = 32, embed_dim: int = 16) -> None:
        super().__init__()
        self.cell = check_cell(cell)
        self.w_iv = nn.Linear(input_size, hidden_size)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = build_rnn(cell, embed_dim, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)

    def init_state(self, v: Tensor) -> dict[str, Tensor]:
        """``h_0 = tanh(W v)`` (and ``c_0 = 0`` for an LSTM), (B, 1, H), from inputs (B, D)."""
        h = torch.tanh(self.w_iv(v))[:, None]  # (B, 1, H)
        return {"h": h, "c": torch.zeros_like(h)} if self.cell == "lstm" else {"h": h}

    def _run(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out, state = run_fused(self.cell, self.rnn, self.embed(tokens), state)  # (B, T, H)
        return self.out(out), state

    def forward(self, v: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced next-token logits (B, T, V) for inputs (B, D) and tokens ``<START> …`` (B, T)."""
        return self._run(tokens, self.init_state(v))[0]

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One decoding step: logits (B, V) for previous tokens (B,), and the new state."""
        logits, state = self._run(tokens[:, None], state)
        return logits[:, 0], state


def train_one_to_many(cfg: TasksConfig, cell: str) -> dict:
    """Trains :class:`OneToMany` to spell the ten digits; returns greedy outputs and exact-match accuracy."""
    torch.manual_seed(cfg.seed)
    vocab = char_vocab("".join(DIGIT_NAMES))
    width = max(map(len, DIGIT_NAMES)) + 2
    seqs = torch.full((len(DIGIT_NAMES), width), PAD)  # (10, L): <START> name <END> <PAD>…
    for i, name in enumerate(DIGIT_NAMES):
        seqs[i, : len(name) + 2] = torch.cat([torch.tensor([START]), encode(vocab, name), torch.tensor([END])])
    v = torch.eye(len(DIGIT_NAMES))  # (10, 10): one input per digit
    model = OneToMany(cell, len(DIGIT_NAMES), len(vocab), cfg.hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(cfg.steps):
        logits = model(v, seqs[:, :-1])  # (10, L - 1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), seqs[:, 1:].flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    outputs = [decode(vocab, row) for row in greedy(model.eval(), v, max_len=width).tokens]
    accuracy = sum(o == n for o, n in zip(outputs, DIGIT_NAMES)) / len(DIGIT_NAMES)
    return {"cell": cell, "accuracy": accuracy, "outputs": outputs, "loss": losses}


def _plot(m2o: list[dict], o2m: list[dict], path: Path) -> None:
    """Many-to-one accuracies and curves, and one-to-many curves."""
    fig, ax = figure(1, 3, figsize=(14, 3.6))
    labels = [f"{r['cell']}\n{r['readout']}" for r in m2o]
    ax[0].bar(labels, [r["accuracy"] for r in m2o], color="tab:blue")
    ax[0].set(ylim=(0.5, 1.0), ylabel="held-out accuracy", title="many-to-one: more 1s than 0s?")
    ax[0].tick_params(axis="x", labelsize=7)
    for r in m2o:
        k = max(1, len(r["loss"]) // 40)  # average over blocks of k steps: the batches are noisy
        curve = torch.tensor(r["loss"][: len(r["loss"]) // k * k]).view(-1, k).mean(1)
        ax[1].plot(torch.arange(1, len(curve) + 1) * k, curve, label=f"{r['cell']}, {r['readout']}")
    ax[1].set(yscale="log", xlabel="step", ylabel="training loss", title="many-to-one training")
    ax[1].legend(fontsize=7)
    for r in o2m:
        ax[2].plot(r["loss"], label=f"{r['cell']}: {r['accuracy']:.0%} names exact")
    ax[2].set(yscale="log", xlabel="step", ylabel="training loss", title="one-to-many: digit -> its name")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _write_html(o2m: list[dict], path: Path) -> None:
    """The one-to-many outputs as an HTML table (digit by cell)."""
    head = "".join(f"<th>{html.escape(r['cell'])}</th>" for r in o2m)
    body = "".join(f"<tr><td>{d}</td>" + "".join(f"<td><code>{html.escape(r['outputs'][d])}</code></td>" for r in o2m)
                   + "</tr>" for d in range(len(DIGIT_NAMES)))
    write_html(path, "one-to-many: greedy decoding of a digit's name",
               [("generated names", f"<table border=1 cellpadding=4><tr><th>digit</th>{head}</tr>{body}</table>")])


def run(cfg: TasksConfig, out: Path) -> dict:
    """Trains every cell on both tasks and writes ``results.json``, ``tasks.png`` and ``tasks.html``."""
    out = Path(out)
    m2o = [train_many_to_one(cfg, cell, readout) for cell in cfg.cells for readout in cfg.readouts]
    o2m = [train_one_to_many(cfg, cell) for cell in cfg.cells]
    _plot(m2o, o2m, out / "tasks.png")
    _write_html(o2m, out / "tasks.html")
    tables = {"many-to-one (held-out accuracy)": [{"cell": r["cell"], "readout": r["readout"],
                                                  "accuracy": r["accuracy"]} for r in m2o],
              "one-to-many (names spelled exactly)": [{"cell": r["cell"], "accuracy": r["accuracy"],
                                                      "outputs": " ".join(r["outputs"])} for r in o2m]}
    results = {"config": as_dict(cfg), "many_to_one": m2o, "one_to_many": o2m, "tables": tables}
    write_json_atomic(out / "results.json", results)
    return results
