"""The hand-built RNN that outputs 1 exactly when the current and the previous input are both 1.

Hidden state ``h_t = (x_t, x_{t-1}, 1)`` from ``h_t = ReLU(W_xh x_t + W_hh h_{t-1})`` with ``h_0 = (0, 0, 1)``,
and output ``y_t = ReLU(W_hy h_t) = ReLU(x_t + x_{t-1} - 1)``. It is an ordinary fused ``rnn_relu`` module with
these weights, checked on every binary sequence up to a length; a trained vanilla RNN learns the same task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.core.io import write_json_atomic
from captioning.lab.config import as_dict, require_positive
from captioning.lab.render import figure, save_figure
from captioning.models.cells import build_rnn, check_cell

W_XH = torch.tensor([[1.0], [0.0], [0.0]])  # (3, 1): copies x_t into unit 0
W_HH = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # unit 0 -> unit 1, unit 2 kept
W_HY = torch.tensor([1.0, 1.0, -1.0])  # x_t + x_{t-1} - 1
H0 = torch.tensor([0.0, 0.0, 1.0])  # no previous input; the constant unit is on
QUICK = MappingProxyType({"max_len": 10, "steps": 200, "test_sequences": 500})  # the --quick preset


@dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy experiment.

    Args:
        max_len: The hand-built RNN is checked on every binary sequence of length 1..max_len.
        cell: Cell of the trained model (a vanilla ``rnn_tanh`` or ``rnn_relu``, or a gated one).
        hidden_size: Hidden units of the trained model.
        train_len: Length of the random training sequences.
        batch_size: Sequences per training step.
        steps: Training steps.
        lr: Adam learning rate.
        test_sequences: Number of held-out random sequences.
        test_len: Length of the held-out sequences (longer than training, to test generalisation).
        eval_every: Steps between held-out evaluations.
        seed: Random seed of initialization and data.
    """

    max_len: int = 12
    cell: str = "rnn_tanh"
    hidden_size: int = 8
    train_len: int = 16
    batch_size: int = 64
    steps: int = 400
    lr: float = 0.01
    test_sequences: int = 2000
    test_len: int = 32
    eval_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        check_cell(self.cell)
        require_positive(self, "max_len", "hidden_size", "train_len", "batch_size", "steps", "lr",
                         "test_sequences", "test_len", "eval_every")


def hand_built_rnn() -> nn.RNNBase:
    """The fused ``rnn_relu`` module with the hand-set weights and zero biases."""
    rnn = build_rnn("rnn_relu", input_size=1, hidden_size=3)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(W_XH)
        rnn.weight_hh_l0.copy_(W_HH)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    return rnn


@torch.no_grad()
def hand_built_outputs(x: Tensor) -> tuple[Tensor, Tensor]:
    """Runs the hand-built RNN on binary sequences.

    Args:
        x: Binary inputs, (N, T).

    Returns:
        Outputs ``y`` (N, T) and hidden states (N, T, 3).
    """
    h0 = H0.expand(1, x.size(0), 3).contiguous()  # (1, N, 3)
    h, _ = hand_built_rnn()(x[..., None].float(), h0)  # (N, T, 3)
    return torch.relu(h @ W_HY), h


def targets(x: Tensor) -> Tensor:
    """1 where the current and the previous input are both 1 (the input before the first counts as 0), (N, T)."""
    prev = F.pad(x[:, :-1], (1, 0))  # (N, T)
    return (x * prev).float()


def all_sequences(length: int) -> Tensor:
    """Every binary sequence of ``length``, (2**length, length)."""
    codes = torch.arange(2 ** length)[:, None]  # (N, 1)
    return (codes >> torch.arange(length - 1, -1, -1)) & 1  # (N, T), most significant bit first


def check_hand_built(max_len: int) -> dict:
    """Counts the sequences of every length 1..max_len on which the hand-built RNN is not exact."""
    per_length = []
    for length in range(1, max_len + 1):
        x = all_sequences(length)
        y, _ = hand_built_outputs(x)
        wrong = (y != targets(x)).any(dim=1).sum().item()
        per_length.append({"length": length, "sequences": x.size(0), "wrong": int(wrong)})
    total = sum(r["sequences"] for r in per_length)
    wrong = sum(r["wrong"] for r in per_length)
    return {"sequences": total, "wrong": wrong, "exact": wrong == 0, "per_length": per_length}


class ToyRNN(nn.Module):
    """A one-layer RNN with a per-step logistic readout.

    Args:
        cell: One of :data:`captioning.models.cells.CELLS`.
        hidden_size: Hidden units.
    """

    def __init__(self, cell: str = "rnn_tanh", hidden_size: int = 8) -> None:
        super().__init__()
        self.rnn = build_rnn(check_cell(cell), input_size=1, hidden_size=hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of "both 1" at every step, (N, T), for binary inputs (N, T)."""
        h, _ = self.rnn(x[..., None].float())  # (N, T, H)
        return self.out(h).squeeze(-1)


@torch.no_grad()
def accuracy(model: ToyRNN, x: Tensor) -> tuple[float, float]:
    """Fractions of steps and of whole sequences that ``model`` gets right."""
    right = (model(x) > 0).float() == targets(x)  # (N, T)
    return right.float().mean().item(), right.all(dim=1).float().mean().item()


def train_toy(cfg: ToyConfig) -> tuple[ToyRNN, list[dict]]:
    """Trains a :class:`ToyRNN` on random sequences; returns it and its held-out history."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = ToyRNN(cfg.cell, cfg.hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    held_out = torch.Generator().manual_seed(cfg.seed + 1)
    test = torch.randint(0, 2, (cfg.test_sequences, cfg.test_len), generator=held_out)
    history = []
    for step in range(1, cfg.steps + 1):
        x = torch.randint(0, 2, (cfg.batch_size, cfg.train_len), generator=gen)
        loss = F.binary_cross_entropy_with_logits(model(x), targets(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            step_acc, seq_acc = accuracy(model, test)
            history.append({"step": step, "loss": loss.item(), "step_accuracy": step_acc, "sequence_accuracy": seq_acc})
    return model, history


def _plot(model: ToyRNN, history: list[dict], path: Path) -> None:
    """Left: one sequence through the hand-built and the trained RNN. Right: the trained RNN's learning curve."""
    x = torch.tensor([[0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1]])
    y, h = hand_built_outputs(x)
    with torch.no_grad():
        p = torch.sigmoid(model(x))
    rows = np.stack([x[0].numpy(), *h[0].T.numpy(), y[0].numpy(), targets(x)[0].numpy(), p[0].numpy()])
    labels = ["input x_t", "h: current", "h: previous", "h: constant", "hand-built y_t", "target", "trained p(y=1)"]
    fig, (a, b) = figure(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1.4, 1]})
    a.imshow(rows, cmap="Blues", vmin=0, vmax=1.6, aspect="auto")
    for (r, c), v in np.ndenumerate(rows):
        a.text(c, r, f"{v:.2f}" if r == len(rows) - 1 else f"{v:.0f}", ha="center", va="center", fontsize=7)
    a.set_yticks(range(len(labels)), labels, fontsize=8)
    a.set_xticks(range(x.size(1)), [f"t={t + 1}" for t in range(x.size(1))], fontsize=6)
    a.set_title("hand-built ReLU RNN and trained RNN on one sequence", fontsize=9)
    steps = [r["step"] for r in history]
    b.plot(steps, [r["loss"] for r in history], label="training loss (BCE)")
    b.plot(steps, [r["step_accuracy"] for r in history], label="held-out step accuracy")
    b.plot(steps, [r["sequence_accuracy"] for r in history], label="held-out sequence accuracy")
    b.set_xlabel("step")
    b.set_ylim(-0.02, 1.05)
    b.legend(fontsize=7)
    b.set_title("trained vanilla RNN", fontsize=9)
    save_figure(fig, path)


def run(cfg: ToyConfig, out: Path) -> dict:
    """Checks the hand-built RNN, trains a vanilla RNN on the same task, and writes results and a figure."""
    out = Path(out)
    hand = check_hand_built(cfg.max_len)
    model, history = train_toy(cfg)
    full = all_sequences(cfg.max_len)
    step_acc, seq_acc = accuracy(model, full)
    reached = next((r["step"] for r in history if r["sequence_accuracy"] == 1.0), None)
    trained = {"held_out_step_accuracy": history[-1]["step_accuracy"],
               "held_out_sequence_accuracy": history[-1]["sequence_accuracy"],
               f"all_length_{cfg.max_len}_sequence_accuracy": seq_acc, "first_step_at_100_percent": reached,
               "history": history}
    _plot(model, history, out / "toy.png")
    rows = [{"model": "hand-built ReLU RNN", "sequences": hand["sequences"],
             "sequence_accuracy": 1.0 - hand["wrong"] / hand["sequences"]},
            {"model": f"trained {cfg.cell} (H={cfg.hidden_size})", "sequences": cfg.test_sequences,
             "sequence_accuracy": trained["held_out_sequence_accuracy"]}]
    results = {"config": as_dict(cfg), "hand_built": hand, "trained": trained, "tables": {"toy task": rows}}
    write_json_atomic(out / "results.json", results)
    return results
