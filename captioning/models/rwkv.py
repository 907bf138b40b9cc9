"""An RWKV-style decoder: time mixing (token shift + the WKV linear recurrence) and channel mixing, pure PyTorch.

Per channel, with decay ``w = exp(decay) > 0`` and bonus ``u``, the time mixing's weighted average is

    wkv_t = (Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})

kept as ``(aa, bb, pp)``: numerator and denominator of the past scaled by ``e^{-pp}``, ``pp`` the running
maximum exponent, so no exponential overflows. Teacher forcing evaluates it in chunks (all pairs inside a
chunk at once, the state carried between chunks); decoding updates the same fixed-size state one token at a
time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.blocks import BlockDecoder, Regions, State
from captioning.models.decoder import DECODERS

NEG = -1e30  # "log of zero" for the empty past: finite, so no inf - inf appears in values or gradients
WKV_STATE = ("aa", "bb", "pp")


def wkv_initial(b: int, c: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The empty past: ``aa = bb = 0``, ``pp = NEG``, each (B, C), float32 or wider."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    zeros = torch.zeros(b, c, dtype=dtype, device=like.device)
    return zeros, zeros.clone(), torch.full_like(zeros, NEG)


def wkv_chunk(w: Tensor, u: Tensor, k: Tensor, v: Tensor, aa: Tensor, bb: Tensor,
              pp: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """WKV over one chunk of ``L`` positions, every pair at once, continuing from the state ``(aa, bb, pp)``.

    Args:
        w: Positive decay per channel, (C,).
        u: Bonus of the current token, (C,).
        k, v: Keys and values, (B, L, C).
        aa, bb, pp: The state before the chunk, (B, C) each.

    Returns:
        The outputs (B, L, C) and the state after the chunk.
    """
    n = k.size(1)
    t = torch.arange(n, device=k.device, dtype=k.dtype)
    gap = t[:, None] - 1 - t[None, :]  # (L, L): t - 1 - i, the decay steps of key i seen at position t
    e_pair = k[:, None, :, :] - gap[None, :, :, None] * w  # (B, L, L, C)
    e_pair = e_pair.masked_fill((gap < 0)[None, :, :, None], NEG)  # only i < t
    e_carry = pp[:, None, :] - t[None, :, None] * w  # (B, L, C): the past before the chunk
    e_now = u + k  # (B, L, C)
    m = torch.maximum(torch.maximum(e_pair.amax(dim=2), e_carry), e_now).detach()  # the result is m-free
    p_pair, p_carry, p_now = (e_pair - m[:, :, None]).exp(), (e_carry - m).exp(), (e_now - m).exp()
    num = torch.einsum("btic,bic->btc", p_pair, v) + p_carry * aa[:, None] + p_now * v  # (B, L, C)
    den = p_pair.sum(dim=2) + p_carry * bb[:, None] + p_now  # (B, L, C)
    e_end = k - (n - 1 - t)[None, :, None] * w  # (B, L, C): key i seen after the chunk
    e_end_carry = pp - n * w  # (B, C)
    p = torch.maximum(e_end.amax(dim=1), e_end_carry).detach()  # (B, C)
    q, q_carry = (e_end - p[:, None]).exp(), (e_end_carry - p).exp()
    return num / den, ((q * v).sum(dim=1) + q_carry * aa, q.sum(dim=1) + q_carry * bb, p)


def wkv_parallel(w: Tensor, u: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
    """WKV over a whole sequence (B, T, C) from the empty past, in chunks of ``chunk`` positions; (B, T, C)."""
    dtype = k.dtype
    k, v = k.to(torch.promote_types(dtype, torch.float32)), v.to(torch.promote_types(dtype, torch.float32))
    w, u = w.to(k.dtype), u.to(k.dtype)
    state, outs = wkv_initial(k.size(0), k.size(2), k), []
    # split, not slices: a slice's backward writes a zero-filled gradient of the whole sequence, and summing
    # one per chunk made teacher forcing quadratic in length (docs/lab.md, `modern`)
    for kc, vc in zip(k.split(chunk, dim=1), v.split(chunk, dim=1)):
        out, state = wkv_chunk(w, u, kc, vc, *state)
        outs.append(out)
    return torch.cat(outs, dim=1)  # (B, T, C)


def wkv_step(w: Tensor, u: Tensor, k: Tensor, v: Tensor, aa: Tensor, bb: Tensor,
             pp: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """WKV of one position: ``k``, ``v`` (B, C) with the state ``(aa, bb, pp)`` (B, C) each; output (B, C)."""
    k, v = k.to(aa.dtype), v.to(aa.dtype)
    w, u = w.to(aa.dtype), u.to(aa.dtype)
    e_now = u + k
    m = torch.maximum(pp, e_now).detach()
    a, b = (pp - m).exp(), (e_now - m).exp()
    out = (a * aa + b * v) / (a * bb + b)  # (B, C)
    decayed = pp - w
    p = torch.maximum(decayed, k).detach()
    a, b = (decayed - p).exp(), (k - p).exp()
    return out, (a * aa + b * v, a * bb + b, p)


def _shift(x: Tensor) -> Tensor:
    """Token shift: the previous position's input, zeros before the first; (B, T, C)."""
    return F.pad(x, (0, 0, 1, -1))


class RWKVBlock(nn.Module):
    """Pre-norm time mixing then channel mixing, each with a residual connection.

    Args:
        d_model: Width C of the residual stream.
        ffn_dim: Hidden width of the channel mixing.
        chunk_size: Positions per chunk of the teacher-forced WKV (memory grows with its square).
        dropout: Dropout on each branch's output.
        depth: The block's index over the number of blocks, in [0, 1): spreads the initial decays.
    """

    def __init__(self, d_model: int, ffn_dim: int, chunk_size: int, dropout: float, depth: float) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        ramp = torch.arange(d_model) / max(d_model - 1, 1)  # (C,) in [0, 1]
        # Mixing weights of the current vs the previous token; channels range from "mostly previous" to "current".
        self.mix_k, self.mix_v, self.mix_r = (nn.Parameter(0.2 + 0.6 * ramp) for _ in range(3))
        self.decay = nn.Parameter(-4.0 + 5.0 * ramp * (1.0 - 0.5 * depth))  # w = e^decay: slow to fast decays
        self.bonus = nn.Parameter(torch.full((d_model,), 0.5))  # u
        self.key, self.value, self.receptance, self.output = (nn.Linear(d_model, d_model, bias=False)
                                                              for _ in range(4))
        self.ffn_mix_k, self.ffn_mix_r = (nn.Parameter(0.2 + 0.6 * ramp) for _ in range(2))
        self.ffn_key = nn.Linear(d_model, ffn_dim, bias=False)
        self.ffn_value = nn.Linear(ffn_dim, d_model, bias=False)
        self.ffn_receptance = nn.Linear(d_model, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def _time_inputs(self, x: Tensor, prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Keys, values and receptance gates from the token-shifted mixtures of ``x`` and ``prev``."""
        k = self.key(torch.lerp(prev, x, self.mix_k))
        v = self.value(torch.lerp(prev, x, self.mix_v))
        return k, v, torch.sigmoid(self.receptance(torch.lerp(prev, x, self.mix_r)))

    def _channel_mix(self, x: Tensor, prev: Tensor) -> Tensor:
        k = torch.relu(self.ffn_key(torch.lerp(prev, x, self.ffn_mix_k))).square()
        return torch.sigmoid(self.ffn_receptance(torch.lerp(prev, x, self.ffn_mix_r))) * self.ffn_value(k)

    def forward(self, x: Tensor) -> Tensor:
        """The block over a whole sequence (B, T, C) from the empty past; (B, T, C)."""
        a = self.ln1(x)
        k, v, r = self._time_inputs(a, _shift(a))  # (B, T, C) each
        wkv = wkv_parallel(self.decay.exp(), self.bonus, k, v, self.chunk_size)
        x = x + self.drop(self.output((r * wkv).to(r.dtype)))
        f = self.ln2(x)
        return x + self.drop(self._channel_mix(f, _shift(f)))  # (B, T, C)

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One position (B, C) with this block's state (``att_x``, ``ffn_x``, ``aa``, ``bb``, ``pp``: (B, C))."""
        a = self.ln1(x)
        k, v, r = self._time_inputs(a, state["att_x"])
        wkv, (aa, bb, pp) = wkv_step(self.decay.exp(), self.bonus, k, v, state["aa"], state["bb"], state["pp"])
        x = x + self.drop(self.output((r * wkv).to(r.dtype)))
        f = self.ln2(x)
        x = x + self.drop(self._channel_mix(f, state["ffn_x"]))
        return x, {"att_x": a, "ffn_x": f, "aa": aa, "bb": bb, "pp": pp}


@DECODERS.register("rwkv")
class RWKVDecoder(BlockDecoder):
    """RWKV-style caption decoder; its decoding state has a fixed size (5 vectors of width C per block).

    Args:
        vocab_size: Number of words including the special tokens (linked from the data).
        feature_dim: Width of the pooled image feature ``v``, or of a region with ``grid`` (linked from the encoder).
        d_model: Width of the residual stream and the embeddings.
        num_layers: RWKV blocks.
        ffn_mult: Channel-mixing hidden width over ``d_model``.
        chunk_size: Positions per chunk of the teacher-forced WKV.
        dropout: Dropout on inputs, block outputs and before the vocabulary projection.
        grid: Read the region grid, attending over it after every block (:class:`BlockDecoder`).
        grid_heads: Heads of that attention.
    """

    def __init__(self, vocab_size: int, feature_dim: int, d_model: int = 256, num_layers: int = 2,
                 ffn_mult: int = 4, chunk_size: int = 16, dropout: float = 0.0, grid: bool = False,
                 grid_heads: int = 4) -> None:
        super().__init__(vocab_size, feature_dim, d_model, dropout, num_layers, grid, grid_heads)
        self.config = dict(name="rwkv", vocab_size=vocab_size, feature_dim=feature_dim, d_model=d_model,
                           num_layers=num_layers, ffn_mult=ffn_mult, chunk_size=chunk_size, dropout=dropout,
                           grid=grid, grid_heads=grid_heads)
        self.blocks = nn.ModuleList(RWKVBlock(d_model, ffn_mult * d_model, chunk_size, dropout, i / num_layers)
                                    for i in range(num_layers))

    def initial_state(self, ctx: Tensor, regions: Regions | None) -> State:
        b, c, n = ctx.size(0), ctx.size(1), len(self.blocks)
        aa, bb, pp = wkv_initial(b * n, c, ctx)
        zeros = ctx.new_zeros(b, n, c)  # (B, L, C)
        return {"att_x": zeros, "ffn_x": zeros.clone(), "aa": aa.view(b, n, c), "bb": bb.view(b, n, c),
                "pp": pp.view(b, n, c)}

    def mix_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        keys = ("att_x", "ffn_x", *WKV_STATE)
        layers = []
        for i, block in enumerate(self.blocks):
            x, new = block.step(x, {key: state[key][:, i] for key in keys})
            x, alpha = self.read_regions(i, x, state.get("regions"), state.get("image"))
            layers.append(new)
        new = {key: torch.stack([s[key] for s in layers], dim=1) for key in keys}  # (B, L, C) each
        return x, new if alpha is None else {**new, "alpha": alpha}
