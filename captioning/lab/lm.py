"""A character-level RNN language model: one-hot or embedded input, any cell, stacked layers.

Training is full or truncated backpropagation through time (:func:`bptt_windows`), evaluation is bits per
character, and :func:`activation_bytes` counts the memory autograd holds for the backward pass. The model
has ``init_state(prompt)``/``step`` so :mod:`captioning.models.decoding` generates text from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.decoding import START, greedy, sample
from captioning.lab.config import require_positive
from captioning.lab.text import decode, encode
from captioning.models.cells import State, build_rnn, check_cell, run_fused
from captioning.data.vocab import Vocabulary



@dataclass(frozen=True)
class TrainConfig:
    """Model and optimisation settings of a character language model.

    Args:
        cell: One of :data:`captioning.models.cells.CELLS`.
        hidden_size: Hidden units per layer.
        num_layers: Stacked recurrent layers.
        embed_dim: Width of the learned character embedding; 0 feeds one-hot vectors instead.
        dropout: Dropout between stacked layers.
        steps: Training sequences (optimizer steps for full BPTT; ``seq_len / bptt`` times more for truncated).
        batch_size: Sequences per step.
        seq_len: Characters per training sequence (each starts from a zero state).
        bptt: Truncation window: the state is carried across windows, gradients stay inside one; 0 (or
            ``seq_len``) is full BPTT.
        lr: Adam learning rate.
        clip: Maximum total gradient norm; 0 disables clipping.
        eval_every: Steps between held-out evaluations.
        seed: Random seed of initialization and batches.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    embed_dim: int = 32
    dropout: float = 0.0
    steps: int = 300
    batch_size: int = 32
    seq_len: int = 128
    bptt: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_cell(self.cell)
        require_positive(self, "hidden_size", "num_layers", "steps", "batch_size", "seq_len", "lr", "eval_every")
        if self.embed_dim < 0 or self.bptt < 0 or self.clip < 0 or not 0 <= self.dropout < 1:
            raise ValueError("embed_dim, bptt and clip must be >= 0 and dropout in [0, 1)")


class CharLM(nn.Module):
    """Predicts the next character from the previous ones.

    Args:
        vocab_size: Characters including the four special tokens.
        cell: One of :data:`captioning.models.cells.CELLS`.
        hidden_size: Hidden units per layer.
        num_layers: Stacked layers.
        embed_dim: Learned embedding width; 0 for one-hot input.
        dropout: Dropout between stacked layers.
    """

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 embed_dim: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.cell, self.vocab_size = check_cell(cell), vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim) if embed_dim > 0 else None
        self.rnn = build_rnn(cell, embed_dim or vocab_size, hidden_size, num_layers, dropout)
        self.out = nn.Linear(hidden_size, vocab_size)  # W_hy

    @classmethod
    def from_config(cls, vocab_size: int, cfg: TrainConfig) -> "CharLM":
        """The model a :class:`TrainConfig` describes."""
        return cls(vocab_size, cfg.cell, cfg.hidden_size, cfg.num_layers, cfg.embed_dim, cfg.dropout)

    def inputs(self, tokens: Tensor) -> Tensor:
        """Embedded or one-hot characters, (B, T, E) or (B, T, V), for ids (B, T)."""
        if self.embed is None:
            return F.one_hot(tokens, self.vocab_size).float()
        return self.embed(tokens)

    def zero_state(self, batch: int) -> State:
        """The all-zero state of ``batch`` sequences."""
        h = self.out.weight.new_zeros(batch, self.rnn.num_layers, self.rnn.hidden_size)  # (B, L, H)
        return {"h": h, "c": torch.zeros_like(h)} if self.cell == "lstm" else {"h": h}

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One fused recurrent call over a chunk.

        Args:
            tokens: Input character ids, (B, T).
            state: State entering the chunk; ``None`` for zeros.

        Returns:
            Next-character logits (B, T, V) and the state leaving the chunk.
        """
        state = self.zero_state(tokens.size(0)) if state is None else state
        out, state = run_fused(self.cell, self.rnn, self.inputs(tokens), state)  # (B, T, H)
        return self.out(out), state

    def init_state(self, prompt: Tensor) -> State:
        """Decoding state after all but the last prompt character (the decoding loop feeds that one).

        Args:
            prompt: Character ids to condition on, (B, P) with P ≥ 1; ``[<START>]`` for none.
        """
        state = self.zero_state(prompt.size(0))
        if prompt.size(1) > 1:
            _, state = self(prompt[:, :-1], state)
        return dict(state, last=prompt[:, -1])

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Advances one character; the loop's initial ``<START>`` stands for the prompt's last character.

        Args:
            tokens: Previous characters, (B,).
            state: From :meth:`init_state` or the previous step.

        Returns:
            Next-character logits (B, V) and the new state.
        """
        tokens = torch.where(tokens == START, state["last"], tokens)  # (B,)
        logits, new = self(tokens[:, None], {k: v for k, v in state.items() if k != "last"})
        return logits[:, 0], dict(new, last=state["last"])


def detach(state: State) -> State:
    """``state`` cut from the graph: gradients of later chunks stop here."""
    return {k: v.detach() for k, v in state.items()}


class Window(NamedTuple):
    """One truncated-BPTT window: its mean loss (nats/char), the (detached) state entering it, the state leaving it."""

    loss: Tensor
    state_in: State | None
    state_out: State


def bptt_windows(model: CharLM, batch: Tensor, window: int) -> Iterator[Window]:
    """Walks a batch of sequences in windows, carrying the state across and cutting gradients between them.

    The caller backpropagates each window's loss (and may step the optimizer) before asking for the next.

    Args:
        model: The language model.
        batch: Character ids, (B, T + 1): inputs are ``[:, :-1]``, targets ``[:, 1:]``.
        window: Steps per window; 0 or ≥ T is full BPTT (one window).
    """
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (B, T) each
    window = window if 0 < window < inputs.size(1) else inputs.size(1)
    state = None
    for start in range(0, inputs.size(1), window):
        state_in = None if state is None else detach(state)
        x = inputs[:, start:start + window].contiguous()  # (B, W): a copy, so no window keeps the batch alive
        y = targets[:, start:start + window].contiguous()
        logits, state = model(x, state_in)  # (B, W, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        yield Window(loss, state_in, state)


def random_batch(ids: Tensor, batch_size: int, length: int, generator: torch.Generator) -> Tensor:
    """``batch_size`` random windows of ``length`` characters from ``ids``, (B, length)."""
    if len(ids) < length + 1:
        raise ValueError(f"text of {len(ids)} characters is shorter than a sequence of {length + 1}")
    starts = torch.randint(0, len(ids) - length + 1, (batch_size,), generator=generator)
    return ids[starts[:, None] + torch.arange(length)]


@torch.no_grad()
def bits_per_char(model: nn.Module, ids: Tensor, seq_len: int, batch_size: int = 64) -> float:
    """Mean cross-entropy in bits of every character of ``ids`` after the first, in windows of ``seq_len``.

    Each window starts from a zero state, as in training. ``model(ids)`` returns ``(logits, state)``: a
    :class:`CharLM`, or a :class:`captioning.lab.seqmodels.DecoderLM`.
    """
    model.eval()
    n = (len(ids) - 1) // seq_len
    if n == 0:
        raise ValueError(f"held-out text of {len(ids)} characters is shorter than one window of {seq_len + 1}")
    starts = torch.arange(n) * seq_len
    windows = ids[starts[:, None] + torch.arange(seq_len + 1)]  # (N, S + 1)
    total = 0.0
    for chunk in windows.split(batch_size):
        logits, _ = model(chunk[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
    model.train()
    return total / (n * seq_len) / math.log(2)


def train_lm(cfg: TrainConfig, train_ids: Tensor, vocab_size: int,
             val_ids: Tensor | None = None) -> tuple[CharLM, list[dict]]:
    """Trains a :class:`CharLM` with full or truncated BPTT.

    Returns:
        The model and its history every ``eval_every`` steps: training bits per character, the largest
        gradient norm, the fraction of updates clipped, and held-out bits per character if ``val_ids`` is given.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = CharLM.from_config(vocab_size, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, recent, norms = [], [], []
    for step in range(1, cfg.steps + 1):
        batch = random_batch(train_ids, cfg.batch_size, cfg.seq_len + 1, gen)
        for w in bptt_windows(model, batch, cfg.bptt):
            opt.zero_grad()
            w.loss.backward()
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip > 0 else math.inf).item())
            opt.step()
            recent.append(w.loss.item() / math.log(2))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = {"step": step, "train_bpc": sum(recent) / len(recent), "max_grad_norm": max(norms),
                   "over_clip": sum(n > cfg.clip for n in norms) / len(norms) if cfg.clip > 0 else 0.0}
            if val_ids is not None:
                row["val_bpc"] = bits_per_char(model, val_ids, cfg.seq_len)
            history.append(row)
            recent, norms = [], []
    return model, history


class SavedTensorMeter:
    """Counts the bytes of distinct tensors autograd saves for the backward pass, parameters excluded.

    Use as a context manager around a forward pass; ``bytes`` is then the activation memory the graph holds.
    """

    def __init__(self, model: nn.Module) -> None:
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: set[int] = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._params and ptr not in self._seen:
            self._seen.add(ptr)
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def activation_bytes(model: CharLM, batch: Tensor, window: int) -> int:
    """Peak bytes autograd holds while training on ``batch`` (B, T + 1) with BPTT window ``window`` (0: full).

    Each window's graph is freed by its backward pass before the next is built, so the peak is the largest
    window's graph: it grows with T for full BPTT and stays flat for truncated BPTT.
    """
    peak = 0
    windows = bptt_windows(model, batch, window)
    while True:
        with SavedTensorMeter(model) as meter:
            w = next(windows, None)
        if w is None:
            return peak
        peak = max(peak, meter.bytes)
        model.zero_grad()
        w.loss.backward()


def generate(model: CharLM, vocab: Vocabulary, prompt: str = "", length: int = 200,
             temperature: float = 0.0, generator: torch.Generator | None = None) -> str:
    """Continues ``prompt`` by ``length`` characters with the shared decoding functions.

    Args:
        model: A trained language model.
        vocab: Its character vocabulary.
        prompt: Text to condition on; empty starts from ``<START>``.
        length: Characters to generate (fewer if the model emits ``<END>``).
        temperature: 0 for greedy decoding, otherwise the sampling temperature.
        generator: Random generator for reproducible samples.
    """
    ids = encode(vocab, prompt) if prompt else torch.tensor([START])  # (P,)
    model.eval()
    if temperature == 0.0:
        out = greedy(model, ids[None], max_len=length)
    else:
        out = sample(model, ids[None], max_len=length, temperature=temperature, generator=generator)
    model.train()
    return decode(vocab, out.tokens[0])
