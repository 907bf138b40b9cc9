"""What the block decoders (RWKV, Mamba, Transformer) share: embeddings, the image terms, the output head.

Every input position ``t`` reads ``x_t = E w_t + W_ih v``: the image enters through its own matrix ``W_ih``,
added to the input of every step, as in the recurrent decoder. With ``grid=True`` the decoder reads the
encoder's region grid ``g_1 … g_N`` instead: ``v`` is the regions' mean, and after every block each position
attends over the regions (:class:`RegionAttention`, queried by that position's stream, keys and values
projected once per image), its context ``z_t`` entering the stream through its own matrix: ``x + W_z z_t``.
The next block's recurrence reads it, as the attention decoders' LSTMs read ``W_ih z_t``. A subclass supplies
the token mixing: a parallel pass over a whole sequence (:meth:`BlockDecoder.mix`) and one step from a state
(:meth:`BlockDecoder.mix_step`), which must agree, calling :meth:`BlockDecoder.read_regions` after each block.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from captioning.models.decoder import check_grid

State = dict[str, "Tensor | Regions"]
Regions = dict[str, list[Tensor]]  # per image: every block's region "keys" and "values" (B, heads, N, head_dim)


class RegionAttention(nn.Module):
    """Multi-head scaled dot-product attention from the stream's positions to one image's regions; returns
    ``x + W_z z`` and the weights averaged over heads.

    Args:
        d_model: Width C of the stream.
        region_dim: Width of a region feature.
        num_heads: Attention heads (``d_model`` divisible by it).
        dropout: Dropout on the output.
    """

    def __init__(self, d_model: int, region_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by grid_heads={num_heads}")
        self.heads = num_heads
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(region_dim, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)  # W_z
        self.drop = nn.Dropout(dropout)

    def memory(self, grid: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, heads, N, head_dim) of the regions (B, N, D), once per image."""
        b, n, _ = grid.shape
        keys, values = self.kv(grid).view(b, n, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return keys, values

    def forward(self, x: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, T, C) attending its rows' regions (B, heads, N, head_dim); returns (B, T, C), (B, T, N)."""
        b, t, c = x.shape
        q = self.query(self.norm(x)).view(b, t, self.heads, -1).transpose(1, 2)  # (B, heads, T, hd)
        scores = q @ keys.transpose(-1, -2).to(q.dtype) / math.sqrt(q.size(-1))  # (B, heads, T, N)
        weights = scores.float().softmax(dim=-1)
        z = (weights.to(values.dtype) @ values).transpose(1, 2).flatten(2)  # (B, T, C)
        return x + self.drop(self.out(z.to(x.dtype))), weights.mean(dim=1)


class BlockDecoder(nn.Module, ABC):
    """Embedding + ``W_ih v`` → blocks (each followed by the region attention with ``grid``) → LayerNorm →
    ``W_hy``; subclasses define the blocks.

    Args:
        vocab_size: Number of words including the special tokens.
        feature_dim: Width of the pooled image feature ``v``, or of a region with ``grid``.
        d_model: Width of the residual stream (and of the word embeddings).
        dropout: Dropout on the inputs, inside the blocks and before the vocabulary projection.
        num_layers: Blocks (one region attention after each with ``grid``).
        grid: Read the region grid (B, N, D) through attention after every block instead of the pooled ``v``.
        grid_heads: Heads of the region attention.
    """

    needs_grid = False  # per instance: ``grid``
    grid_option = "grid"  # the constructor option that makes a decoder read the grid (see ``reads_grid``)

    def __init__(self, vocab_size: int, feature_dim: int, d_model: int, dropout: float, num_layers: int = 1,
                 grid: bool = False, grid_heads: int = 4) -> None:
        super().__init__()
        self.feature_dim, self.needs_grid = feature_dim, grid
        self.embed = nn.Embedding(vocab_size, d_model)
        self.w_ih = nn.Linear(feature_dim, d_model)  # W_ih: the image term of every step's input
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)  # W_hy
        self.regions = nn.ModuleList(RegionAttention(d_model, feature_dim, grid_heads, dropout)
                                     for _ in range(num_layers)) if grid else None

    @property
    def vocab_size(self) -> int:
        return self.out.out_features

    def mix(self, x: Tensor, ctx: Tensor, regions: Regions | None) -> tuple[Tensor, Tensor | None]:
        """The blocks over a whole sequence ``x`` (B, T, C) from the initial state; ``ctx`` = ``W_ih v`` (B, C).
        Returns the output (B, T, C) and the last region attention's weights (B, T, N) (``None`` without).
        This default runs ``self.blocks``, each mapping (B, T, C) to (B, T, C), then its region attention."""
        alpha = None
        for i, block in enumerate(self.blocks):
            x, alpha = self.read_regions(i, block(x), regions)
        return x, alpha

    @abstractmethod
    def initial_state(self, ctx: Tensor, regions: Regions | None) -> dict[str, Tensor]:
        """The blocks' state before the first token (every tensor's first dimension is the batch)."""

    @abstractmethod
    def mix_step(self, x: Tensor, state: State) -> tuple[Tensor, dict[str, Tensor]]:
        """The blocks on one position ``x`` (B, C): output (B, C) and the new state (with ``alpha`` (B, N),
        the weights of :meth:`read_regions`' last call, when reading the grid)."""

    def read_regions(self, i: int, x: Tensor, regions: Regions | None,
                     image: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Block ``i``'s region attention for ``x`` (B, T, C) or one position (B, C); identity for pooled ``v``.

        Args:
            image: The image (B,) each row reads (decoding moves rows, the regions stay); ``None``: row = image.
        """
        if regions is None:
            return x, None
        keys, values = regions["keys"][i], regions["values"][i]
        if image is not None:
            keys, values = keys.index_select(0, image), values.index_select(0, image)
        if x.dim() == 2:
            out, weights = self.regions[i](x[:, None], keys, values)
            return out[:, 0], weights[:, 0]  # (B, C), (B, N)
        return self.regions[i](x, keys, values)

    def _inputs(self, features: Tensor) -> tuple[Tensor, Regions | None]:
        """``ctx = W_ih v`` (B, C) and the regions' keys and values (``None`` for pooled ``v``)."""
        if not self.needs_grid:
            return self.w_ih(features), None
        check_grid(self.config["name"], self.feature_dim, features)
        kv = [attention.memory(features) for attention in self.regions]
        return self.w_ih(features.mean(dim=1)), {"keys": [k for k, _ in kv], "values": [v for _, v in kv]}

    def attend(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V), parallel over time, and the last region attention's weights
        (B, T, N) (``None`` for pooled ``v``).

        Args:
            features: Pooled image features (B, D), or the region grid (B, N, D) with ``grid``.
            tokens: Input tokens ``<START> w_1 … w_n`` (padded), (B, T).
        """
        ctx, regions = self._inputs(features)  # ctx: (B, C), once per image
        x = self.drop(self.embed(tokens) + ctx[:, None, :])  # (B, T, C)
        h, alpha = self.mix(x, ctx, regions)
        return self.out(self.drop(self.norm(h))), alpha  # (B, T, V)

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits for the next token at every position, (B, T, V) (see :meth:`attend`)."""
        return self.attend(features, tokens)[0]

    def init_state(self, features: Tensor) -> State:
        """The decoding state before ``<START>``: ``W_ih v`` and the blocks' initial state; with ``grid`` also
        the regions (per image, never copied per row), each row's ``image`` and its attention ``alpha``.

        Args:
            features: Pooled image features (B, D), or the region grid (B, N, D) with ``grid``.
        """
        ctx, regions = self._inputs(features)  # (B, C)
        ctx = ctx.to(torch.promote_types(ctx.dtype, self.embed.weight.dtype))  # autocast: keep states full width
        state = {"ctx": ctx, **self.initial_state(ctx, regions)}
        if regions is not None:
            rows = torch.arange(features.size(0), device=features.device)
            state.update(regions=regions, image=rows, alpha=features.new_zeros(features.shape[:2]))
        return state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step.

        Args:
            tokens: The previous token of every sequence, (B,).
            state: The state from :meth:`init_state` or the previous step.

        Returns:
            Next-token logits (B, V) and the new state.
        """
        x = self.drop(self.embed(tokens) + state["ctx"])  # (B, C)
        h, new = self.mix_step(x, state)
        # Each entry keeps its dtype from step to step (beam search copies rows between old and new states).
        new = {key: t.to(state[key].dtype) if key in state else t for key, t in new.items()}
        kept = {key: state[key] for key in ("ctx", "regions", "image") if key in state}
        return self.out(self.drop(self.norm(h))), {**kept, **new}
