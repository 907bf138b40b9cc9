"""Character language models made of the registered caption decoders, sized to a parameter count and
trained for a wall-clock budget.

A :class:`DecoderLM` is any decoder of :data:`captioning.models.decoder.DECODERS` (the LSTM ``rnn``,
``rwkv``, ``mamba``, ``transformer``) whose image feature is a constant zero vector of width 1, so the
image term ``W_ih v`` is just a learned bias. Characters are the decoder's "words". No model code is
repeated here: teacher forcing is the decoder's ``forward``, decoding its ``init_state``/``step``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.lab.lm import random_batch
from captioning.models import DECODERS  # importing the package registers every decoder
from captioning.models.blocks import State

MODELS = ("lstm", "rwkv", "mamba", "transformer")
FEATURE_DIM = 1  # the constant image feature: one zero


@dataclass(frozen=True)
class ModelShape:
    """How a model family is laid out; the width is chosen to meet a parameter count.

    Args:
        lstm_layers: Stacked LSTM layers.
        lstm_embed: The LSTM's character embedding width (the block models embed at their width).
        block_layers: Blocks of RWKV, Mamba and the Transformer.
        num_heads: Attention heads of the Transformer.
    """

    lstm_layers: int = 1
    lstm_embed: int = 32
    block_layers: int = 2
    num_heads: int = 4


def decoder_config(name: str, vocab_size: int, width: int, shape: ModelShape) -> dict:
    """The :data:`DECODERS` config of model ``name`` (one of :data:`MODELS`) at ``width``."""
    base = dict(vocab_size=vocab_size, feature_dim=FEATURE_DIM)
    if name == "lstm":
        return dict(base, name="rnn", cell="lstm", embed_dim=shape.lstm_embed, hidden_dim=width,
                    num_layers=shape.lstm_layers)
    if name == "transformer":
        return dict(base, name="transformer", d_model=width, num_layers=shape.block_layers,
                    num_heads=shape.num_heads)
    if name in ("rwkv", "mamba"):
        return dict(base, name=name, d_model=width, num_layers=shape.block_layers)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


class DecoderLM(nn.Module):
    """A next-character model: a registered decoder fed a zero image feature.

    Args:
        decoder: A decoder built from :data:`DECODERS`.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def image(self, batch: int) -> Tensor:
        """The constant image feature of ``batch`` sequences, (B, 1)."""
        return self.decoder.out.weight.new_zeros(batch, FEATURE_DIM)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Teacher-forced logits (B, T, V) of character ids (B, T), from the empty past.

        Returns an empty state as the second value, so :func:`captioning.lab.lm.bits_per_char` can score it.
        """
        if state:
            raise ValueError("a DecoderLM always starts from the empty past")
        return self.decoder(self.image(tokens.size(0)), tokens), {}

    def start(self, batch: int) -> State:
        """The decoding state before the first character."""
        return self.decoder.init_state(self.image(batch))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Logits (B, V) after characters ``tokens`` (B,), and the new state."""
        return self.decoder.step(tokens, state)


def build_lm(name: str, vocab_size: int, width: int, shape: ModelShape) -> DecoderLM:
    """Model ``name`` at ``width`` (hidden size of the LSTM, ``d_model`` of the others)."""
    return DecoderLM(DECODERS.build(decoder_config(name, vocab_size, width, shape)))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def width_for(name: str, vocab_size: int, params: int, shape: ModelShape) -> int:
    """The width (a multiple of 4 and of the head count) whose parameter count is closest to ``params``.

    Models are built on the ``meta`` device, so counting allocates nothing; the count grows with the width,
    so a bisection finds the crossing.
    """
    unit = math.lcm(4, shape.num_heads)

    def count(k: int) -> int:
        with torch.device("meta"):
            return count_parameters(build_lm(name, vocab_size, k * unit, shape))

    lo, hi = 1, 2
    while count(hi) < params:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # count(lo) < params <= count(hi), or lo == 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < params else (lo, mid)
    best = min((lo, hi), key=lambda k: abs(count(k) - params))
    return best * unit


def train_for(model: DecoderLM, train_ids: Tensor, seconds: float, batch_size: int, seq_len: int, lr: float,
              clip: float, log_every: int, generator: torch.Generator, min_steps: int = 0) -> list[dict]:
    """Trains with Adam on random windows of ``seq_len`` characters until ``seconds`` of wall-clock time pass
    and at least ``min_steps`` steps are done (so a smoke run on a busy machine still learns something).

    Every step is full backpropagation through the window (teacher forcing from the empty past). The budget
    is checked after each step, so the last step may end a little after it.

    Returns:
        One row every ``log_every`` steps and one at the end: ``step``, ``seconds``, mean training
        ``train_bpc`` since the previous row, ``tokens`` seen.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history, recent, step, start = [], [], 0, time.perf_counter()
    while True:
        batch = random_batch(train_ids, batch_size, seq_len + 1, generator)  # (B, S + 1)
        logits, _ = model(batch[:, :-1])  # (B, S, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
        opt.step()
        step += 1
        recent.append(loss.item() / math.log(2))
        elapsed = time.perf_counter() - start
        done = elapsed >= seconds and step >= min_steps
        if step % log_every == 0 or done:
            history.append({"step": step, "seconds": round(elapsed, 3), "train_bpc": sum(recent) / len(recent),
                            "tokens": step * batch_size * seq_len})
            recent = []
        if done:
            return history
