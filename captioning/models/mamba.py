"""A Mamba-style decoder: selective state-space blocks in pure PyTorch (no CUDA-only package).

Each block projects its input to a stream ``x`` and a gate ``z``; ``x`` passes a short causal depthwise
convolution and SiLU, then the selective scan with input-dependent step ``Δ_t``, input matrix ``B_t`` and
output matrix ``C_t`` (per channel ``e``, state size ``N``, ``A = -exp(A_log)``):

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t        y_t = C_t · h_t + D x_t        out = W_o (y ⊙ SiLU(z))

Teacher forcing runs the scan in chunks: inside a chunk a Hillis-Steele parallel prefix scan (log₂ L
doubling steps; every factor ``exp(Δ A)`` lies in (0, 1], so nothing overflows), the state carried between
chunks. Decoding keeps a fixed-size state: the convolution's last inputs and ``h``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.blocks import BlockDecoder, Regions, State
from captioning.models.decoder import DECODERS


def prefix_scan(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan of ``h_t = a_t h_{t-1} + b_t`` over dim 1 (Hillis-Steele).

    Args:
        a, b: Factors and offsets, (B, L, ...).

    Returns:
        ``(A_t, B_t)`` with ``h_t = A_t h_0 + B_t`` for every ``t``, each shaped like ``a``.
    """
    n, shift = a.size(1), 1
    pad = [0, 0] * (a.dim() - 2)
    while shift < n:
        a_prev = F.pad(a, (*pad, shift, -shift), value=1.0)  # a_{t-shift}, 1 before the start
        b_prev = F.pad(b, (*pad, shift, -shift))  # b_{t-shift}, 0 before the start
        a, b = a * a_prev, a * b_prev + b
        shift *= 2
    return a, b


def selective_scan(delta: Tensor, a: Tensor, bm: Tensor, cm: Tensor, x: Tensor, h: Tensor,
                   chunk: int) -> tuple[Tensor, Tensor]:
    """The selective scan over a sequence, chunk by chunk.

    Args:
        delta: Step sizes Δ, (B, T, E).
        a: The (negative) state matrix A, (E, N).
        bm, cm: Input and output matrices B_t, C_t, (B, T, N).
        x: Inputs, (B, T, E).
        h: State before the sequence, (B, E, N).
        chunk: Positions per chunk.

    Returns:
        ``C_t · h_t`` (B, T, E) and the state after the sequence (B, E, N).
    """
    ys = []
    # split, not slices: a slice's backward writes a zero-filled gradient of the whole sequence per chunk
    for d, xc, bc, cc in zip(*(t.split(chunk, dim=1) for t in (delta, x, bm, cm))):  # (B, L, ·) each
        decay = torch.exp(d[..., None] * a)  # (B, L, E, N)
        drive = (d * xc)[..., None] * bc[:, :, None, :]  # (B, L, E, N)
        acc_decay, acc = prefix_scan(decay, drive)
        hs = acc_decay * h[:, None] + acc  # (B, L, E, N)
        ys.append(torch.einsum("blen,bln->ble", hs, cc))
        h = hs[:, -1]
    return torch.cat(ys, dim=1), h  # (B, T, E), (B, E, N)


class MambaBlock(nn.Module):
    """Pre-norm selective SSM block with a residual connection.

    Args:
        d_model: Width C of the residual stream.
        d_state: State size N per channel.
        d_conv: Kernel of the causal depthwise convolution.
        expand: Inner width E over ``d_model``.
        chunk_size: Positions per chunk of the teacher-forced scan.
        dropout: Dropout on the block's output.
    """

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, chunk_size: int,
                 dropout: float) -> None:
        super().__init__()
        inner = expand * d_model
        self.dt_rank, self.d_state, self.chunk_size = math.ceil(d_model / 16), d_state, chunk_size
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)  # -> x, z
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner)  # depthwise; padded on the left only
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)  # -> Δ (low rank), B, C
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        with torch.no_grad():  # initial Δ log-uniform in [1e-3, 1e-1]: bias = softplus⁻¹(Δ)
            dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.a_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float)).repeat(inner, 1))
        self.skip = nn.Parameter(torch.ones(inner))  # D
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def _ssm_inputs(self, xc: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Δ (…, E), B (…, N), C (…, N) from the convolved stream, and A (E, N); float32 or wider."""
        dtype = torch.promote_types(xc.dtype, torch.float32)
        dt, bm, cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt).to(dtype))
        return delta, bm.to(dtype), cm.to(dtype), -self.a_log.exp().to(dtype)

    def _output(self, y: Tensor, xc: Tensor, z: Tensor) -> Tensor:
        y = y + self.skip * xc.to(y.dtype)
        return self.drop(self.out_proj((y * F.silu(z.to(y.dtype))).to(z.dtype)))

    def forward(self, x: Tensor) -> Tensor:
        """The block over a whole sequence (B, T, C) from the zero state; (B, T, C)."""
        xi, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, T, E) each
        k = self.conv.kernel_size[0]
        xc = F.silu(self.conv(F.pad(xi.transpose(1, 2), (k - 1, 0))).transpose(1, 2))  # (B, T, E): causal
        delta, bm, cm, a = self._ssm_inputs(xc)
        h0 = delta.new_zeros(x.size(0), a.size(0), a.size(1))  # (B, E, N)
        y, _ = selective_scan(delta, a, bm, cm, xc.to(delta.dtype), h0, self.chunk_size)
        return x + self._output(y, xc, z)  # (B, T, C)

    def step(self, x: Tensor, conv: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One position (B, C) with the last ``d_conv - 1`` inputs ``conv`` (B, E, K-1) and the state ``h``
        (B, E, N); returns the output and both new states."""
        xi, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, E) each
        window = torch.cat([conv.to(xi.dtype), xi[..., None]], dim=-1)  # (B, E, K)
        xc = F.silu((window * self.conv.weight[:, 0]).sum(dim=-1) + self.conv.bias)  # (B, E)
        delta, bm, cm, a = self._ssm_inputs(xc)
        drive = (delta * xc.to(delta.dtype))[..., None] * bm[:, None]  # (B, E, N)
        h = torch.exp(delta[..., None] * a) * h.to(delta.dtype) + drive  # (B, E, N)
        y = (h * cm[:, None]).sum(dim=-1)  # (B, E)
        return x + self._output(y, xc, z), window[..., 1:], h


@DECODERS.register("mamba")
class MambaDecoder(BlockDecoder):
    """Mamba-style caption decoder; its decoding state has a fixed size (E × (K - 1 + N) per block).

    Args:
        vocab_size: Number of words including the special tokens (linked from the data).
        feature_dim: Width of the pooled image feature ``v``, or of a region with ``grid`` (linked from the encoder).
        d_model: Width of the residual stream and the embeddings.
        num_layers: Mamba blocks.
        d_state: SSM state size N per channel.
        d_conv: Kernel of the causal depthwise convolution.
        expand: Inner width over ``d_model``.
        chunk_size: Positions per chunk of the teacher-forced scan.
        dropout: Dropout on inputs, block outputs and before the vocabulary projection.
        grid: Read the region grid, attending over it after every block (:class:`BlockDecoder`).
        grid_heads: Heads of that attention.
    """

    def __init__(self, vocab_size: int, feature_dim: int, d_model: int = 256, num_layers: int = 2,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2, chunk_size: int = 32,
                 dropout: float = 0.0, grid: bool = False, grid_heads: int = 4) -> None:
        super().__init__(vocab_size, feature_dim, d_model, dropout, num_layers, grid, grid_heads)
        self.config = dict(name="mamba", vocab_size=vocab_size, feature_dim=feature_dim, d_model=d_model,
                           num_layers=num_layers, d_state=d_state, d_conv=d_conv, expand=expand,
                           chunk_size=chunk_size, dropout=dropout, grid=grid, grid_heads=grid_heads)
        self.blocks = nn.ModuleList(MambaBlock(d_model, d_state, d_conv, expand, chunk_size, dropout)
                                    for _ in range(num_layers))

    def initial_state(self, ctx: Tensor, regions: Regions | None) -> State:
        c = self.config
        b, n, inner = ctx.size(0), c["num_layers"], c["expand"] * c["d_model"]
        dtype = torch.promote_types(ctx.dtype, torch.float32)
        return {"conv": ctx.new_zeros(b, n, inner, c["d_conv"] - 1, dtype=dtype),  # (B, L, E, K-1)
                "ssm": ctx.new_zeros(b, n, inner, c["d_state"], dtype=dtype)}  # (B, L, E, N)

    def mix_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        convs, hs = [], []
        for i, block in enumerate(self.blocks):
            x, conv, h = block.step(x, state["conv"][:, i], state["ssm"][:, i])
            x, alpha = self.read_regions(i, x, state.get("regions"), state.get("image"))
            convs.append(conv)
            hs.append(h)
        new = {"conv": torch.stack(convs, dim=1), "ssm": torch.stack(hs, dim=1)}
        return x, new if alpha is None else {**new, "alpha": alpha}
