"""Recurrent cells shared by the captioner, the VQA question encoder and the RNN lab.

The fused PyTorch modules (``nn.RNN``/``nn.LSTM``/``nn.GRU``) run whole sequences; :func:`cell_step` runs one
step of one layer *with the same parameters*, from a precomputed input pre-activation, so callers can add
per-sequence terms (such as ``W_ih v``) once instead of at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.core.runtime import cpu_has_fast_bf16

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
State = dict[str, Tensor]  # "h" (and "c" for LSTM), (B, L, H): batch-first, so beams reorder with one index
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def check_cell(cell: str) -> str:
    """Returns ``cell`` if it names a known cell, else raises a ``ValueError`` listing the choices."""
    if cell not in _GATES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    return cell


def gate_size(cell: str, hidden_size: int) -> int:
    """Width of a cell's input pre-activation: ``hidden_size`` times its number of gates."""
    return _GATES[check_cell(cell)] * hidden_size


def build_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              dropout: float = 0.0) -> nn.RNNBase:
    """A fused, batch-first multi-layer recurrent module of the given cell type.

    Args:
        cell: One of :data:`CELLS`.
        input_size: Width of the layer-0 input.
        hidden_size: Width of every layer's hidden state.
        num_layers: Stacked layers; each layer's output feeds the next.
        dropout: Dropout on the outputs of every layer but the last.
    """
    check_cell(cell)
    dropout = dropout if num_layers > 1 else 0.0
    kwargs = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                  dropout=dropout, batch_first=True)
    if cell == "lstm":
        return nn.LSTM(**kwargs)
    if cell == "gru":
        return nn.GRU(**kwargs)
    return nn.RNN(nonlinearity=cell.removeprefix("rnn_"), **kwargs)


def layer_weights(rnn: nn.RNNBase, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``(W_ih, W_hh, b_ih, b_hh)`` of one layer of a fused module."""
    return tuple(getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def input_projection(rnn: nn.RNNBase, layer: int, x: Tensor, columns: slice = slice(None)) -> Tensor:
    """``x @ W_ih[:, columns]^T + b_ih`` for one layer: the input pre-activation of a step."""
    w_ih, _, b_ih, _ = layer_weights(rnn, layer)
    return F.linear(x, w_ih[:, columns], b_ih)


def cell_step(cell: str, rnn: nn.RNNBase, layer: int, pre: Tensor, h: Tensor,
              c: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """One step of one layer, equal to what the fused module computes at that step.

    Args:
        cell: The cell type of ``rnn``.
        rnn: The fused module whose parameters are used.
        layer: Which layer.
        pre: Input pre-activation ``W_ih x + b_ih`` (plus any extra input terms), (B, G).
        h: Previous hidden state, (B, H).
        c: Previous LSTM cell state, (B, H); ``None`` for other cells.

    Returns:
        The new ``(h, c)``; ``c`` is ``None`` except for LSTM.
    """
    _, w_hh, _, b_hh = layer_weights(rnn, layer)
    rec = F.linear(h, w_hh, b_hh)  # (B, G)
    if cell == "lstm":
        i, f, g, o = (pre + rec).chunk(4, dim=-1)  # PyTorch gate order: input, forget, cell, output
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        pr, pz, pn = pre.chunk(3, dim=-1)
        rr, rz, rn = rec.chunk(3, dim=-1)
        r, z = torch.sigmoid(pr + rr), torch.sigmoid(pz + rz)
        n = torch.tanh(pn + r * rn)  # the reset gate scales only the recurrent part
        return (1 - z) * n + z * h, None
    act = torch.tanh if cell == "rnn_tanh" else torch.relu
    return act(pre + rec), None


def _cpu_bf16_autocast() -> bool:
    """Whether bf16 autocast is on for CPU tensors here."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def run_fused(cell: str, rnn: nn.RNNBase, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """One fused call over a whole sequence, from and to a batch-first state.

    Args:
        cell: The cell type of ``rnn``.
        rnn: A fused module from :func:`build_rnn`.
        x: Inputs, (B, T, D).
        state: ``h`` (and ``c`` for LSTM), (B, L, H) each; ``None`` starts from zeros.

    Returns:
        The last layer's outputs (B, T, H) and the new state.
    """
    hx = None
    if state is not None:
        hx = tuple(state[k].transpose(0, 1).contiguous() for k in ("h", "c") if k in state)  # (L, B, H) each
        hx = hx if cell == "lstm" else hx[0]
    if cell == "lstm" and x.device.type == "cpu" and _cpu_bf16_autocast() and not cpu_has_fast_bf16():
        # oneDNN has no bf16 LSTM without AVX512 ("could not create a primitive descriptor"): run it in fp32
        with torch.autocast("cpu", enabled=False):
            hx = tuple(t.float() for t in hx) if hx is not None else None
            out, hx = rnn(x.float(), hx)  # (B, T, H)
    else:
        out, hx = rnn(x, hx)  # (B, T, H)
    hx = hx if cell == "lstm" else (hx,)
    return out, {k: t.transpose(0, 1) for k, t in zip(("h", "c"), hx)}


class _LSTMRecurrence(torch.autograd.Function):
    """The LSTM recurrence over a whole sequence from precomputed input pre-activations.

    Forward runs one ``addmm`` per step into preallocated time-major buffers; backward runs one ``mm`` per
    step for ``dh`` and then a single GEMM over all positions for ``dW_hh`` (as cuDNN/oneDNN do), instead
    of autograd's per-step weight gradients.
    """

    @staticmethod
    def forward(ctx, pre: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t_len, b, g = pre.shape  # time-major (T, B, 4H), both biases and any per-sequence term included
        hid = g // 4
        gates = pre.new_empty(t_len, b, g)  # activated i, f, g, o
        hs = pre.new_empty(t_len + 1, b, hid)  # h_0 … h_T
        cs = pre.new_empty(t_len + 1, b, hid)  # c_0 … c_T
        tanh_c = pre.new_empty(t_len, b, hid)
        hs[0], cs[0] = h0, c0
        w_t = w_hh.t()
        for t in range(t_len):
            gt = torch.addmm(pre[t], hs[t], w_t, out=gates[t])  # (B, 4H)
            gt[:, : 2 * hid].sigmoid_()
            gt[:, 2 * hid : 3 * hid].tanh_()
            gt[:, 3 * hid :].sigmoid_()
            i, f, gg, o = gt.chunk(4, dim=1)
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, gg)
            torch.mul(torch.tanh(cs[t + 1], out=tanh_c[t]), o, out=hs[t + 1])
        ctx.save_for_backward(w_hh, gates, hs, cs, tanh_c)
        return hs[1:], hs[t_len], cs[t_len]

    @staticmethod
    def backward(ctx, d_out: Tensor, d_hn: Tensor, d_cn: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w_hh, gates, hs, cs, tanh_c = ctx.saved_tensors
        t_len, b, g = gates.shape
        d_gates = torch.empty_like(gates)  # (T, B, 4H)
        dh, dc = d_hn.clone(), d_cn.clone()
        for t in reversed(range(t_len)):
            dh += d_out[t]
            i, f, gg, o = gates[t].chunk(4, dim=1)
            di, df, dg, do = d_gates[t].chunk(4, dim=1)
            torch.mul(dh, tanh_c[t], out=do).mul_(o * (1 - o))
            dc.addcmul_(dh * o, 1 - tanh_c[t] * tanh_c[t])  # (B, H)
            torch.mul(dc, gg, out=di).mul_(i * (1 - i))
            torch.mul(dc, cs[t], out=df).mul_(f * (1 - f))
            torch.mul(dc, i, out=dg).mul_(1 - gg * gg)
            dc.mul_(f)
            dh = d_gates[t] @ w_hh  # (B, H)
        d_w = d_gates.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)  # (4H, H): one GEMM over all positions
        return d_gates, dh, dc, d_w


def lstm_layer(pre: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over a sequence whose input pre-activations are already computed.

    Equal to ``nn.LSTM`` on the same parameters; callers fold any per-sequence input term (such as
    ``W_ih v``) into ``pre`` once instead of recomputing it at every position.

    Args:
        pre: ``W_ih x_t + b_ih + b_hh`` (plus any extra input terms), time-major (T, B, 4H).
        w_hh: Recurrent weight (4H, H).
        h0: Initial hidden state (B, H).
        c0: Initial cell state (B, H).

    Returns:
        Outputs ``h_1 … h_T`` (T, B, H), and the final ``h`` and ``c`` (B, H) each.
    """
    return _LSTMRecurrence.apply(pre, h0, c0, w_hh)


class _InjectedInputTerm(torch.autograd.Function):
    """``x_t W_x^T + v W_v^T + b`` for every position, with ``W = [W_x | W_v]`` one parameter.

    The image term is computed once per sequence; backward writes both column blocks of the weight gradient
    into one tensor (two GEMMs), instead of two zero-filled full-size gradients that autograd then adds.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v: Tensor, w: Tensor, b: Tensor) -> Tensor:
        e = x.size(-1)
        per_image = torch.addmm(b, v, w[:, e:].t())  # (B, G)
        pre = torch.matmul(x, w[:, :e].t())  # (T, B, G)
        pre += per_image
        ctx.save_for_backward(x, v, w)
        return pre

    @staticmethod
    def backward(ctx, d_pre: Tensor):
        x, v, w = ctx.saved_tensors
        e = x.size(-1)
        d_image = d_pre.sum(0)  # (B, G)
        d_w = w.new_empty(w.shape)
        d_w[:, :e] = d_pre.flatten(0, 1).t() @ x.flatten(0, 1)  # (G, E)
        d_w[:, e:] = d_image.t() @ v  # (G, D)
        d_x = d_pre @ w[:, :e] if ctx.needs_input_grad[0] else None  # (T, B, E)
        d_v = d_image @ w[:, e:] if ctx.needs_input_grad[1] else None  # (B, D)
        d_b = d_image.sum(0) if ctx.needs_input_grad[3] else None
        return d_x, d_v, d_w, d_b


def injected_input_term(x: Tensor, v: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Input pre-activations of a layer that reads ``[x_t; v]`` at every step, without repeating ``v``.

    Args:
        x: Inputs, time-major (T, B, E).
        v: One vector per sequence, (B, D).
        w: The layer's input weight ``[W_x | W_v]``, (G, E + D).
        b: Bias, (G,).

    Returns:
        ``W_x x_t + W_v v + b`` for every position, (T, B, G): equal to ``F.linear([x_t; v], w, b)``.
    """
    return _InjectedInputTerm.apply(x, v, w, b)
