"""Gradient flow back through time: ||dL/dh_t|| against the largest singular value of W_hh, and clipping.

The loss reads only the last hidden state (``L = u . h_T`` with a unit vector ``u``, so ``||dL/dh_T|| = 1``).
Backpropagation multiplies by ``W_hh^T diag(f'(a_t))`` at every step, so for a tanh RNN
``||dL/dh_t|| <= (sigma_max(W_hh) * max|tanh'|)^(T - t)``: it vanishes when ``sigma_max < 1``. With an
orthogonal ``W_hh`` scaled by ``s`` every singular value is ``s``, and in the linear regime (tiny inputs,
``tanh' ~ 1``) the norm is exactly ``s^(T - t)``: it explodes when ``s > 1``. Large inputs saturate tanh and
shrink the gradient; an LSTM's gates and cell state change the picture. Gradient clipping rescales the
total gradient to a maximum norm, which is what keeps training with an exploding RNN stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.core.io import write_json_atomic
from captioning.lab.config import as_dict, require_positive
from captioning.lab.render import figure, save_figure
from captioning.models.cells import build_rnn, cell_step, check_cell, input_projection

INITS = ("orthogonal", "default")
QUICK = MappingProxyType({"scales": (0.8, 1.0, 1.2), "train_steps": 100})  # the --quick preset


@dataclass(frozen=True)
class GradFlowConfig:
    """Settings of the gradient-flow experiment.

    Args:
        cells: Cells to measure.
        scales: Largest singular value given to W_hh (to each gate's block for gated cells).
        input_scales: Input standard deviations; tiny keeps tanh linear, 1 lets it saturate.
        init: ``orthogonal`` (all singular values equal the scale) or ``default`` (PyTorch's uniform init,
            rescaled so only the largest one does).
        input_size: Input width.
        hidden_size: Hidden units.
        seq_len: Steps from the first input to the loss.
        batch_size: Sequences averaged over.
        forget_bias: LSTM forget-gate bias (all other biases are 0).
        clip: Maximum total gradient norm for clipping.
        train_scale: W_hh scale of the tanh RNN trained with and without clipping.
        train_len: Sequence length of that task (recall the sign of the first input at the end).
        train_steps: Its SGD steps.
        train_lr: Its SGD learning rate.
        seed: Random seed.
    """

    cells: tuple[str, ...] = ("rnn_tanh", "lstm")
    scales: tuple[float, ...] = (0.8, 1.0, 1.2, 2.0)
    input_scales: tuple[float, ...] = (1e-5, 1.0)
    init: str = "orthogonal"
    input_size: int = 16
    hidden_size: int = 64
    seq_len: int = 40
    batch_size: int = 16
    forget_bias: float = 1.0
    clip: float = 1.0
    train_scale: float = 3.0
    train_len: int = 20
    train_steps: int = 300
    train_lr: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        for cell in self.cells:
            check_cell(cell)
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        require_positive(self, "input_size", "hidden_size", "batch_size", "clip", "train_scale", "train_len",
                         "train_steps", "train_lr")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {self.seq_len}")


def scaled_rnn(cell: str, input_size: int, hidden_size: int, scale: float, init: str = "orthogonal",
               forget_bias: float = 1.0) -> nn.RNNBase:
    """A one-layer fused RNN whose W_hh gate blocks have largest singular value ``scale`` and zero biases.

    Args:
        cell: One of :data:`captioning.models.cells.CELLS`.
        input_size: Input width.
        hidden_size: Hidden units.
        scale: Largest singular value of each (H, H) block of W_hh.
        init: ``orthogonal`` or ``default`` (see :class:`GradFlowConfig`).
        forget_bias: Bias of the LSTM forget gate.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    rnn = build_rnn(check_cell(cell), input_size, hidden_size)
    with torch.no_grad():
        for block in rnn.weight_hh_l0.split(hidden_size, dim=0):  # one (H, H) block per gate
            if init == "orthogonal":
                nn.init.orthogonal_(block)
            block.mul_(scale / torch.linalg.matrix_norm(block, ord=2))
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
        if cell == "lstm":
            rnn.bias_ih_l0[hidden_size:2 * hidden_size] = forget_bias  # gate order: input, forget, cell, output
    return rnn


def unroll(cell: str, rnn: nn.RNNBase, x: Tensor) -> list[Tensor]:
    """Every hidden state h_1..h_T of layer 0, stepped with :func:`cell_step` so each is a graph node.

    Args:
        cell: The cell type of ``rnn``.
        rnn: A fused one-layer module.
        x: Inputs, (B, T, D).
    """
    pre = input_projection(rnn, 0, x)  # (B, T, G)
    h = x.new_zeros(x.size(0), rnn.hidden_size)  # (B, H)
    c = torch.zeros_like(h) if cell == "lstm" else None
    hs = []
    for t in range(x.size(1)):
        h, c = cell_step(cell, rnn, 0, pre[:, t], h, c)
        hs.append(h)
    return hs


def gradient_norms(cell: str, rnn: nn.RNNBase, x: Tensor, clip: float, generator: torch.Generator) -> dict:
    """||dL/dh_t|| for every step back from the loss, and the total parameter gradient norm before/after clipping.

    Returns:
        ``norms`` (index k = k steps back from the loss, mean over the batch), ``growth_per_step`` (their
        geometric-mean ratio per step), ``grad_norm`` and ``clipped_norm`` of all parameters.
    """
    hs = unroll(cell, rnn, x)
    u = torch.randn(rnn.hidden_size, generator=generator)
    loss = (hs[-1] @ (u / u.norm())).sum()  # per-sequence losses: each row's gradient is its own
    grads = torch.autograd.grad(loss, hs, retain_graph=True)
    norms = [g.norm(dim=1).mean().item() for g in reversed(grads)]  # (T,), k = 0 at the loss
    rnn.zero_grad()
    loss.backward()
    total = nn.utils.clip_grad_norm_(rnn.parameters(), clip).item()
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in rnn.parameters()])).item()
    growth = math.exp(math.log(max(norms[-1], 1e-300) / norms[0]) / (len(norms) - 1)) if len(norms) > 1 else 1.0
    return {"norms": norms, "growth_per_step": growth, "grad_norm": total, "clipped_norm": clipped}


def spectrum(rnn: nn.RNNBase) -> dict:
    """Largest singular value and spectral radius of W_hh's first (H, H) block."""
    block = rnn.weight_hh_l0[: rnn.hidden_size].detach()
    return {"sigma_max": torch.linalg.matrix_norm(block, ord=2).item(),
            "spectral_radius": torch.linalg.eigvals(block).abs().max().item()}


def measure(cfg: GradFlowConfig) -> list[dict]:
    """One row per (cell, input scale, W_hh scale): its spectrum and :func:`gradient_norms`."""
    rows = []
    for cell in cfg.cells:
        for input_scale in cfg.input_scales:
            for scale in cfg.scales:
                torch.manual_seed(cfg.seed)
                gen = torch.Generator().manual_seed(cfg.seed)
                rnn = scaled_rnn(cell, cfg.input_size, cfg.hidden_size, scale, cfg.init, cfg.forget_bias)
                x = input_scale * torch.randn(cfg.batch_size, cfg.seq_len, cfg.input_size, generator=gen)
                row = {"cell": cell, "input_scale": input_scale, "scale": scale, **spectrum(rnn)}
                rows.append({**row, **gradient_norms(cell, rnn, x, cfg.clip, gen)})
    return rows


def train_recall(cfg: GradFlowConfig, clip: float) -> dict:
    """SGD on "output the sign of the first input after ``train_len`` steps" with an exploding tanh RNN.

    Args:
        cfg: The experiment settings (``train_*`` fields).
        clip: Maximum gradient norm; 0 trains without clipping.

    Returns:
        Per-step ``loss`` and total gradient norm before clipping (``grad_norm``).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rnn = scaled_rnn("rnn_tanh", 1, cfg.hidden_size, cfg.train_scale, cfg.init)
    head = nn.Linear(cfg.hidden_size, 1)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.train_lr)
    losses, norms = [], []
    for _ in range(cfg.train_steps):
        x = torch.randint(0, 2, (cfg.batch_size, cfg.train_len, 1), generator=gen).float() * 2 - 1  # (B, T, 1)
        h, _ = rnn(x)  # (B, T, H)
        loss = F.binary_cross_entropy_with_logits(head(h[:, -1]).squeeze(-1), (x[:, 0, 0] > 0).float())
        opt.zero_grad()
        loss.backward()
        norms.append(nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf).item())
        opt.step()
        losses.append(loss.item())
    return {"loss": losses, "grad_norm": norms}


def _plot(cfg: GradFlowConfig, rows: list[dict], training: dict, path: Path) -> None:
    """One panel per (input scale, cell) with a line per W_hh scale, and the clipping comparison."""
    n_rows, n_cols = len(cfg.input_scales), len(cfg.cells) + 1
    fig, ax = figure(n_rows, n_cols, figsize=(4.2 * n_cols, 3.4 * n_rows), squeeze=False)
    for i, input_scale in enumerate(cfg.input_scales):
        for j, cell in enumerate(cfg.cells):
            a = ax[i, j]
            for r in rows:
                if r["cell"] == cell and r["input_scale"] == input_scale:
                    line, = a.semilogy(r["norms"], label=f"sigma_max={r['scale']:g}")
                    if cell == "rnn_tanh":
                        a.semilogy([r["scale"] ** k for k in range(len(r["norms"]))], ls=":", color=line.get_color())
            a.set(title=f"{cell}, input scale {input_scale:g}", xlabel="steps back from the loss (T - t)",
                  ylabel="||dL/dh_t||" if j == 0 else None)
            a.legend(fontsize=7)
    a = ax[0, -1]
    for (name, curve), colour in zip(training.items(), ("tab:red", "tab:blue")):
        a.semilogy(curve["grad_norm"], label=f"{name}: gradient norm", lw=0.7, ls="--", color=colour)
        a.plot(curve["loss"], label=f"{name}: loss", lw=1.5, color=colour)
    a.set(title=f"tanh RNN, sigma_max={cfg.train_scale:g}, SGD lr {cfg.train_lr:g}", xlabel="step")
    a.legend(fontsize=7)
    for i in range(1, n_rows):
        ax[i, -1].set_axis_off()
    ax[-1, -1].text(0, 0.5, "dotted: sigma_max^(T-t),\nthe linear-regime prediction", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def run(cfg: GradFlowConfig, out: Path) -> dict:
    """Measures every setting, trains with and without clipping, and writes ``results.json`` and ``gradflow.png``."""
    out = Path(out)
    rows = measure(cfg)
    training = {"no clip": train_recall(cfg, 0.0), f"clip {cfg.clip:g}": train_recall(cfg, cfg.clip)}
    _plot(cfg, rows, training, out / "gradflow.png")
    table = [{"cell": r["cell"], "input_scale": r["input_scale"], "sigma_max": r["sigma_max"],
              "spectral_radius": r["spectral_radius"], "norm_at_T-1": r["norms"][1],
              f"norm_at_T-{cfg.seq_len - 1}": r["norms"][-1], "growth_per_step": r["growth_per_step"],
              "grad_norm": r["grad_norm"], "clipped": r["clipped_norm"]} for r in rows]
    last = max(1, cfg.train_steps // 10)
    train_table = [{"run": name, "max_grad_norm": max(c["grad_norm"]),
                    f"mean_loss_last_{last}_steps": sum(c["loss"][-last:]) / last} for name, c in training.items()]
    results = {"config": as_dict(cfg), "settings": rows, "training": training,
               "tables": {"gradient norms": table, "training with an exploding RNN": train_table}}
    write_json_atomic(out / "results.json", results)
    return results
