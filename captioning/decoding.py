"""Caption decoding as free functions over a decoder's ``init_state``/``step``.

Every function is batched over images (and beams), stops each image independently at ``<END>`` or after
``max_len`` words, and never emits ``<PAD>`` or ``<START>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from captioning.vocab import Vocabulary

PAD, START, END = Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.end_id


class StepDecoder(Protocol):
    def init_state(self, v: Tensor) -> dict[str, Tensor]: ...

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]: ...


@dataclass
class Captions:
    """Decoded token ids (B, T) padded with ``<PAD>`` after ``<END>``, and each caption's log-probability.

    ``token_log_probs`` (B, T), when returned, holds each chosen token's log-probability (0 after ``<END>``).
    """

    tokens: Tensor
    scores: Tensor
    token_log_probs: Tensor | None = None


def _log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    logits = logits.float() / temperature
    logits[:, [PAD, START]] = float("-inf")  # never generated
    return logits.log_softmax(dim=-1)  # (N, V)


def _reorder(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {k: t.index_select(0, index) for k, t in state.items()}


def _autoregress(decoder: StepDecoder, v: Tensor, max_len: int, choose) -> Captions:
    """Shared loop of greedy and sampling: ``choose(log_probs) -> tokens`` picks each next word."""
    b = v.size(0)
    state = decoder.init_state(v)
    tokens = v.new_full((b,), START, dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool, device=v.device)
    out, chosen = [], []
    for _ in range(max_len + 1):  # max_len words, then <END>
        logits, state = decoder.step(tokens, state)  # (B, V)
        logp = _log_probs(logits)
        if len(out) == max_len:  # out of words: force <END>
            logp = torch.where(torch.arange(logp.size(1), device=v.device) == END, 0.0, float("-inf")).expand_as(logp)
        tokens = choose(logp)  # (B,)
        chosen.append(torch.where(done, 0.0, logp.gather(1, tokens[:, None]).squeeze(1)))  # (B,)
        tokens = tokens.masked_fill(done, PAD)  # finished captions are padded
        out.append(tokens)
        done = done | (tokens == END)
        if done.all():
            break
    token_log_probs = torch.stack(chosen, dim=1)  # (B, T)
    return Captions(torch.stack(out, dim=1), token_log_probs.sum(dim=1), token_log_probs)


@torch.no_grad()
def greedy(decoder: StepDecoder, v: Tensor, max_len: int = 20) -> Captions:
    """Picks the most probable word at every step.

    Args:
        decoder: Anything with ``init_state(v)`` and ``step(tokens, state)``.
        v: Pooled image features, (B, D).
        max_len: Maximum number of words before ``<END>``.
    """
    return _autoregress(decoder, v, max_len, lambda logp: logp.argmax(dim=-1))


@torch.no_grad()
def sample(decoder: StepDecoder, v: Tensor, max_len: int = 20, temperature: float = 1.0, top_k: int = 0,
           generator: torch.Generator | None = None) -> Captions:
    """Samples every word from the (temperature-scaled, optionally top-k truncated) distribution.

    Args:
        decoder: Anything with ``init_state(v)`` and ``step(tokens, state)``.
        v: Pooled image features, (B, D).
        max_len: Maximum number of words before ``<END>``.
        temperature: Divides the logits; below 1 sharpens, above 1 flattens.
        top_k: Sample only among the ``top_k`` most probable words (0: all).
        generator: Random generator, for reproducible samples.

    Returns:
        Sampled captions; ``scores`` are their log-probabilities under the model (temperature 1).
    """
    return sample_with_grad(decoder, v, max_len, temperature, top_k, generator)


def sample_with_grad(decoder: StepDecoder, v: Tensor, max_len: int = 20, temperature: float = 1.0,
                     top_k: int = 0, generator: torch.Generator | None = None) -> Captions:
    """:func:`sample` that keeps the graph: ``scores`` and ``token_log_probs`` (B, T) are differentiable
    log-probabilities of the sampled words under the model (temperature 1), for policy gradients."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    def choose(logp: Tensor) -> Tensor:
        logp = logp.detach() / temperature
        if top_k > 0:
            kth = logp.topk(min(top_k, logp.size(1)), dim=-1).values[:, -1:]  # (B, 1)
            logp = logp.masked_fill(logp < kth, float("-inf"))
        return torch.multinomial(logp.softmax(dim=-1), 1, generator=generator).squeeze(1)

    return _autoregress(decoder, v, max_len, choose)


def scheduled_sampling(decoder: StepDecoder, v: Tensor, tokens: Tensor, prob: float,
                       generator: torch.Generator | None = None) -> Tensor:
    """Teacher forcing in which each input word after ``<START>`` is, with probability ``prob``, replaced by
    a word sampled from the model's own previous prediction (Bengio et al. 2015).

    Steps in Python (``decoder.step``), so it is slower than the fused teacher-forced ``decoder(v, tokens)``,
    which it equals at ``prob = 0``. No gradient flows through the sampled words.

    Args:
        decoder: Anything with ``init_state(v)`` and ``step(tokens, state)``.
        v: Pooled image features, (N, D).
        tokens: Ground-truth input tokens ``<START> w_1 … w_n`` (padded), (N, T).
        prob: Probability of feeding the model's own sample instead of the ground-truth word.
        generator: Random generator, for reproducible choices.

    Returns:
        Next-token logits at every position, (N, T, V).
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    state = decoder.init_state(v)
    inputs, outputs = tokens[:, 0], []
    for t in range(tokens.size(1)):
        if t > 0:
            inputs = tokens[:, t]
            if prob > 0:
                own = torch.multinomial(_log_probs(logits.detach()).exp(), 1, generator=generator).squeeze(1)
                replace = torch.rand(inputs.shape, generator=generator, device=inputs.device) < prob  # (N,)
                inputs = torch.where(replace, own, inputs)
        logits, state = decoder.step(inputs, state)  # (N, V)
        outputs.append(logits)
    return torch.stack(outputs, dim=1)  # (N, T, V)


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length normalizer ``((5 + len) / 6) ** alpha``; ``alpha = 0`` ranks by raw log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(decoder: StepDecoder, v: Tensor, beam_size: int = 3, max_len: int = 20,
                alpha: float = 0.0, n_best: int = 1) -> Captions:
    """Beam search batched over images × beams.

    Args:
        decoder: Anything with ``init_state(v)`` and ``step(tokens, state)``.
        v: Pooled image features, (B, D).
        beam_size: Hypotheses kept per image; 1 gives exactly the greedy caption.
        max_len: Maximum number of words before ``<END>``.
        alpha: Length-penalty exponent used to rank finished hypotheses.
        n_best: Captions returned per image (≤ ``beam_size``).

    Returns:
        Captions with tokens (B, n_best, T) and length-normalized scores (B, n_best), best first.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be in 1..beam_size={beam_size}, got {n_best}")
    b, k, dev = v.size(0), beam_size, v.device
    state = _reorder(decoder.init_state(v), torch.arange(b, device=dev).repeat_interleave(k))  # B*K rows
    tokens = torch.full((b * k,), START, dtype=torch.long, device=dev)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: only one may expand at first
    history = torch.empty(b, k, 0, dtype=torch.long, device=dev)
    done = torch.zeros(b, k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b, k, dtype=torch.long, device=dev)
    for t in range(max_len + 1):
        logits, state = decoder.step(tokens, state)
        logp = _log_probs(logits).view(b, k, -1)  # (B, K, V)
        if t == max_len:  # out of words: only <END>
            logp = torch.where(torch.arange(logp.size(-1), device=dev) == END, 0.0, float("-inf")).expand_as(logp)
        # A finished beam continues only with <PAD> at no cost, so it keeps its score and its place.
        finished_row = torch.full_like(logp[0, 0], float("-inf"))
        finished_row[PAD] = 0.0
        logp = torch.where(done[..., None], finished_row, logp)
        cand = (scores[..., None] + logp).view(b, -1)  # (B, K*V)
        scores, flat = cand.topk(k, dim=-1)  # (B, K): the one sort over beams × vocabulary
        parent, tokens = flat // logp.size(-1), flat % logp.size(-1)  # (B, K)
        history = torch.cat([history.gather(1, parent[..., None].expand(-1, -1, t)), tokens[..., None]], dim=-1)
        done, lengths = done.gather(1, parent), lengths.gather(1, parent)
        lengths += ~done  # <END> counts towards the length, padding does not
        done |= tokens == END
        rows = (parent + torch.arange(b, device=dev)[:, None] * k).view(-1)
        state, tokens = _reorder(state, rows), tokens.view(-1)
        if done.all():
            break
    ranked = scores / length_penalty(lengths, alpha)  # (B, K)
    best = ranked.topk(n_best, dim=-1).indices  # (B, n_best)
    out = history.gather(1, best[..., None].expand(-1, -1, history.size(-1)))
    return Captions(out, ranked.gather(1, best))
