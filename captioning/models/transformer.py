"""A causal Transformer decoder, the reference the recurrences are compared with.

The image enters twice through the one matrix ``W_ih``: as a prefix token (position 0 holds ``W_ih v``,
so attention always has the image to look at) and added to every word's input, as in every decoder here.
Position ``p`` adds a sinusoidal encoding (no length limit). Teacher forcing is one masked (causal)
attention pass over ``[image, <START>, w_1, …]``; decoding keeps a key/value cache that grows by one
position per step, each layer's keys and values stored as (B, L, heads, positions, head_dim) so beam search
reorders them like any other state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.blocks import BlockDecoder, Regions, State
from captioning.models.decoder import DECODERS


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal position encodings (P, dim) of integer ``positions`` (P,)."""
    freq = torch.exp(torch.arange(0, dim, 2, device=positions.device) * (-math.log(10_000.0) / dim))  # (dim/2,)
    angle = positions.float()[:, None] * freq  # (P, dim/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)[:, :dim]  # (P, dim)


class TransformerBlock(nn.Module):
    """Pre-norm causal self-attention then a GELU MLP, each with a residual connection.

    Args:
        d_model: Width C of the residual stream.
        num_heads: Attention heads (``d_model`` divisible by it).
        ffn_dim: MLP hidden width.
        dropout: Dropout on each branch's output and on the attention weights in training.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.heads, self.dropout = num_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model))
        self.drop = nn.Dropout(dropout)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys, values (B, heads, T, head_dim) of ``x`` (B, T, C)."""
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """Residual of the attention output (B, heads, T, head_dim), then the MLP; (B, T, C)."""
        x = x + self.drop(self.proj(attended.transpose(1, 2).flatten(2)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Causal attention over the whole sequence (B, T, C); returns the output and the keys and values."""
        q, k, v = self._qkv(x)
        p = self.dropout if self.training else 0.0
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)), k, v

    def step(self, x: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One position (B, C) attending to the cache (B, heads, P, head_dim) and itself; returns the output and
        the cache with this position appended."""
        q, k, v = self._qkv(x[:, None])  # (B, heads, 1, head_dim) each
        keys, values = torch.cat([keys.to(k.dtype), k], dim=2), torch.cat([values.to(v.dtype), v], dim=2)
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, keys, values, dropout_p=p)  # (B, heads, 1, head_dim)
        return self._finish(x[:, None], attended)[:, 0], keys, values


@DECODERS.register("transformer")
class TransformerDecoder(BlockDecoder):
    """Causal Transformer caption decoder with the image as a prefix token and a key/value cache for decoding.

    Args:
        vocab_size: Number of words including the special tokens (linked from the data).
        feature_dim: Width of the pooled image feature ``v``, or of a region with ``grid`` (linked from the encoder).
        d_model: Width of the residual stream and the embeddings.
        num_layers: Transformer blocks.
        num_heads: Attention heads per block (and of the region attention with ``grid``).
        ffn_mult: MLP hidden width over ``d_model``.
        dropout: Dropout on inputs, block outputs, attention weights and before the vocabulary projection.
        grid: Read the region grid, attending over it after every block (:class:`BlockDecoder`): the memory
            a Transformer decoder cross-attends.
    """

    def __init__(self, vocab_size: int, feature_dim: int, d_model: int = 256, num_layers: int = 2,
                 num_heads: int = 4, ffn_mult: int = 4, dropout: float = 0.0, grid: bool = False) -> None:
        super().__init__(vocab_size, feature_dim, d_model, dropout, num_layers, grid, num_heads)
        self.config = dict(name="transformer", vocab_size=vocab_size, feature_dim=feature_dim, d_model=d_model,
                           num_layers=num_layers, num_heads=num_heads, ffn_mult=ffn_mult, dropout=dropout,
                           grid=grid)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, ffn_mult * d_model, dropout)
                                    for _ in range(num_layers))

    def _positions(self, start: int, n: int, like: Tensor) -> Tensor:
        return sinusoid(torch.arange(start, start + n, device=like.device), like.size(-1)).to(like.dtype)

    def mix(self, x: Tensor, ctx: Tensor, regions: Regions | None) -> tuple[Tensor, Tensor | None]:
        h = torch.cat([ctx[:, None].to(x.dtype), x], dim=1)  # (B, 1 + T, C): the image first
        h = h + self._positions(0, h.size(1), h)
        alpha = None
        for i, block in enumerate(self.blocks):
            h, alpha = self.read_regions(i, block(h)[0], regions)
        # the image position predicts nothing: (B, T, C), (B, T, N) | None
        return h[:, 1:], None if alpha is None else alpha[:, 1:]

    def initial_state(self, ctx: Tensor, regions: Regions | None) -> State:
        """Runs the image prefix through every block; the cache then holds one position."""
        h = (ctx + self._positions(0, 1, ctx))[:, None]  # (B, 1, C)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block(h)
            h, _ = self.read_regions(i, h, regions)
            keys.append(k)
            values.append(v)
        return {"keys": torch.stack(keys, dim=1), "values": torch.stack(values, dim=1)}  # (B, L, heads, 1, hd)

    def mix_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h = x + self._positions(state["keys"].size(3), 1, x)  # position = cached positions so far
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block.step(h, state["keys"][:, i], state["values"][:, i])
            h, alpha = self.read_regions(i, h, state.get("regions"), state.get("image"))
            keys.append(k)
            values.append(v)
        new = {"keys": torch.stack(keys, dim=1), "values": torch.stack(values, dim=1)}
        return h, new if alpha is None else {**new, "alpha": alpha}
