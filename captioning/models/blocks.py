"""What the block decoders (RWKV, Mamba, Transformer) share: embeddings, the image term, the output head.

Every input position ``t`` reads ``x_t = E w_t + W_ih v``: the image enters through its own matrix ``W_ih``,
added to the input of every step, as in the recurrent decoder. A subclass supplies the token mixing: a
parallel pass over a whole sequence (:meth:`BlockDecoder.mix`) and one step from a state
(:meth:`BlockDecoder.mix_step`), which must agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

State = dict[str, Tensor]


class BlockDecoder(nn.Module, ABC):
    """Embedding + ``W_ih v`` → blocks → LayerNorm → ``W_hy``; subclasses define the blocks.

    Args:
        vocab_size: Number of words including the special tokens.
        feature_dim: Width of the pooled image feature ``v``.
        d_model: Width of the residual stream (and of the word embeddings).
        dropout: Dropout on the inputs, inside the blocks and before the vocabulary projection.
    """

    def __init__(self, vocab_size: int, feature_dim: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.w_ih = nn.Linear(feature_dim, d_model)  # W_ih: the image term of every step's input
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)  # W_hy

    @property
    def vocab_size(self) -> int:
        return self.out.out_features

    @abstractmethod
    def mix(self, x: Tensor, ctx: Tensor) -> Tensor:
        """The blocks over a whole sequence ``x`` (B, T, C) from the initial state; ``ctx`` = ``W_ih v`` (B, C)."""

    @abstractmethod
    def initial_state(self, ctx: Tensor) -> State:
        """The blocks' state before the first token (every tensor's first dimension is the batch)."""

    @abstractmethod
    def mix_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The blocks on one position ``x`` (B, C): output (B, C) and the new state."""

    def forward(self, v: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits, parallel over time.

        Args:
            v: Pooled image features, (B, D).
            tokens: Input tokens ``<START> w_1 … w_n`` (padded), (B, T).

        Returns:
            Logits for the next token at every position, (B, T, V).
        """
        ctx = self.w_ih(v)  # (B, C): W_ih v, once per image
        x = self.drop(self.embed(tokens) + ctx[:, None, :])  # (B, T, C)
        return self.out(self.drop(self.norm(self.mix(x, ctx))))  # (B, T, V)

    def init_state(self, v: Tensor) -> State:
        """The decoding state before ``<START>``: ``W_ih v`` and the blocks' initial state.

        Args:
            v: Pooled image features, (B, D).
        """
        ctx = self.w_ih(v)  # (B, C)
        ctx = ctx.to(torch.promote_types(ctx.dtype, self.embed.weight.dtype))  # autocast: keep states full width
        return {"ctx": ctx, **self.initial_state(ctx)}

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
        return self.out(self.drop(self.norm(h))), {"ctx": state["ctx"], **new}
