"""Exhaustive oracle for decoding tests: every caption a decoder can emit, and its exact log-probability.

Scores follow :mod:`captioning.models.decoding`: a caption is ``n ≤ max_len`` words (``<PAD>``/``<START>`` are never
generated; ``<UNK>`` is) followed by ``<END>``; its log-probability sums every emitted token's, ``<END>``
included, except the ``<END>`` forced after ``max_len`` words, which is free. Its length counts ``<END>``.
"""

from __future__ import annotations

from itertools import product

import torch
from torch import Tensor

from captioning.models.decoding import END, PAD, START


def all_captions(vocab_size: int, max_len: int) -> list[tuple[int, ...]]:
    """Every caption decoding can produce: ``n ≤ max_len`` generatable words, then ``<END>``."""
    words = [t for t in range(vocab_size) if t not in (PAD, START, END)]
    return [(*ws, END) for n in range(max_len + 1) for ws in product(words, repeat=n)]


def caption_log_probs(decoder, v: Tensor, captions: list[tuple[int, ...]], max_len: int) -> Tensor:
    """Exact log p(caption | image) of every caption for every image, (B, C), differentiable.

    Teacher-forces each caption through ``decoder.step`` (all images × captions in one batch) and sums the
    masked log-softmax of each emitted token; the forced ``<END>`` after ``max_len`` words costs nothing.
    """
    b, c = v.size(0), len(captions)
    targets = torch.full((c, max_len), PAD, dtype=torch.long)  # the tokens emitted at steps 0..max_len-1
    for i, cap in enumerate(captions):
        emitted = cap[:max_len]  # a caption of max_len words has its <END> forced: not emitted
        targets[i, : len(emitted)] = torch.tensor(emitted)
    targets = targets.repeat(b, 1)  # (B*C, max_len), image-major
    state = decoder.init_state(v.repeat_interleave(c, dim=0))
    inputs = torch.full((b * c,), START, dtype=torch.long)
    total = v.new_zeros(b * c, dtype=torch.float)
    for t in range(max_len):
        logits, state = decoder.step(inputs, state)  # (B*C, V)
        banned = torch.zeros(logits.size(1), dtype=torch.bool)
        banned[[PAD, START]] = True
        logp = logits.float().masked_fill(banned, float("-inf")).log_softmax(dim=-1)
        emitted = targets[:, t] != PAD
        picked = logp.gather(1, torch.where(emitted, targets[:, t], END)[:, None]).squeeze(1)
        total = total + picked * emitted
        inputs = targets[:, t]  # past a caption's end its inputs are <PAD>: their outputs are ignored
    return total.view(b, c)


def caption_lengths(captions: list[tuple[int, ...]]) -> Tensor:
    """Each caption's length as the length penalty counts it: its words and its ``<END>``, (C,)."""
    return torch.tensor([len(cap) for cap in captions])
