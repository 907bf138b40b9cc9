"""Caption decoding as free functions over a decoder's ``init_state``/``step``.

Every function is batched over images (and beams), stops each image independently at ``<END>`` or after
``max_len`` words, and never emits ``<PAD>`` or ``<START>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from captioning.data.vocab import Vocabulary

PAD, START, END = Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.end_id


class StepDecoder(Protocol):
    """A decoder that decoding steps row by row. Its state maps names to per-row tensors (N, ...), which
    decoding reorders as rows finish or beams move; an entry that is not a tensor (an attention decoder's
    per-image regions, which rows address through their own per-row image index) is passed through as it is,
    so it is never copied per beam or per step."""

    def init_state(self, v: Tensor) -> dict[str, Tensor]: ...

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Next-token logits (B, V), a new tensor that decoding may overwrite, and the new state."""


@dataclass
class Captions:
    """Decoded token ids (B, T) padded with ``<PAD>`` after ``<END>``, and each caption's log-probability.

    ``token_log_probs`` (B, T), when returned, holds each chosen token's log-probability (0 after ``<END>``).
    """

    tokens: Tensor
    scores: Tensor
    token_log_probs: Tensor | None = None


def _log_probs(logits: Tensor) -> Tensor:
    """Next-token log-probabilities (N, V); masks ``<PAD>``/``<START>`` in the step's (fresh) logits in place."""
    logits = logits.float()
    logits[:, [PAD, START]] = float("-inf")  # never generated
    return logits.log_softmax(dim=-1)  # (N, V)


def _reorder(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """The state's rows ``index``; entries that are not tensors (per-image data) pass through."""
    return {k: t.index_select(0, index) if isinstance(t, Tensor) else t for k, t in state.items()}


def _autoregress(decoder: StepDecoder, v: Tensor, max_len: int, choose) -> Captions:
    """Shared loop of greedy and sampling: ``choose(log_probs) -> tokens`` picks each next word.

    Finished captions leave the batch: each step runs the decoder on the unfinished rows only.
    """
    b = v.size(0)
    state = decoder.init_state(v)
    tokens = v.new_full((b,), START, dtype=torch.long)
    rows = torch.arange(b, device=v.device)  # the caption of every row still decoding
    out = torch.full((b, max_len + 1), PAD, dtype=torch.long, device=v.device)
    chosen = v.new_zeros(b, max_len + 1, dtype=torch.float)  # each chosen word's log-probability
    for t in range(max_len + 1):  # max_len words, then <END>
        if t == max_len:  # out of words: <END> has probability 1, no step needed
            out[rows, t] = END
            break
        logits, state = decoder.step(tokens, state)  # (A, V): A unfinished captions
        logp = _log_probs(logits)  # (A, V)
        tokens = choose(logp)  # (A,)
        chosen[rows, t] = logp.gather(1, tokens[:, None]).squeeze(1)  # in place: autograd records it too
        out[rows, t] = tokens
        live = tokens != END
        if not live.all():
            if not live.any():
                break
            keep = live.nonzero().squeeze(1)
            rows, tokens, state = rows[keep], tokens[keep], _reorder(state, keep)
    token_log_probs = chosen[:, : t + 1]  # (B, T)
    return Captions(out[:, : t + 1], token_log_probs.sum(dim=1), token_log_probs)


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
                probs = _log_probs(logits.detach().clone()).exp()  # a copy: _log_probs masks in place  # (N, V)
                own = torch.multinomial(probs, 1, generator=generator).squeeze(1)
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
    beams = _Beams(b, k, max_len, dev)
    tokens = torch.full((b * k,), START, dtype=torch.long, device=dev)
    for _ in range(max_len):
        logp, state = _step_live(decoder, tokens, state, beams.done.view(-1))  # (A*K, V)
        rows, tokens = beams.advance(logp.view(beams.done.size(0), k, -1))  # (A, K, V): A images decoding
        if rows.numel() == 0:  # every image has finished
            break
        state = _reorder(state, rows)
    else:
        beams.force_end()  # out of words: every unfinished beam ends, no step needed
    return beams.best(n_best, alpha)


def _step_live(decoder: StepDecoder, tokens: Tensor, state: dict[str, Tensor],
               done: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Log-probabilities (N, V) of the next token, running the decoder on unfinished rows only; a finished
    row continues only with ``<PAD>`` at no cost, so it keeps its score and its place."""
    if not done.any():
        logits, state = decoder.step(tokens, state)
        return _log_probs(logits), state
    live = (~done).nonzero().squeeze(1)
    logits, new = decoder.step(tokens[live], _reorder(state, live))  # (L, V)
    logp = _log_probs(logits)
    out = logp.new_full((done.size(0), logp.size(1)), float("-inf"))  # (N, V)
    out[:, PAD] = 0.0
    out[live] = logp
    return out, {key: _merge_rows(state[key], live, new[key]) if isinstance(new[key], Tensor) else new[key]
                 for key in state}


def _merge_rows(old: Tensor, live: Tensor, new: Tensor) -> Tensor:
    """``old`` with its rows ``live`` replaced by ``new``. An entry that grew in the step (a Transformer's
    key/value cache) is zero-padded in the other rows: those are finished and never step again."""
    if old.shape[1:] != new.shape[1:]:
        grown = new.new_zeros((old.size(0), *new.shape[1:]))  # (N, ...)
        grown[(slice(None), *(slice(0, n) for n in old.shape[1:]))] = old
        old = grown
    return old.index_copy(0, live, new)


class _Beams:
    """Scores, lengths and word histories of the beams of the images still decoding; finished images leave
    (their results are kept aside), so they cost no further compute."""

    def __init__(self, b: int, k: int, max_len: int, dev: torch.device) -> None:
        self.k, self.t = k, 0
        self.scores = torch.full((b, k), float("-inf"), device=dev)
        self.scores[:, 0] = 0.0  # all beams start identical: only one may expand at first
        self.done = torch.zeros(b, k, dtype=torch.bool, device=dev)
        self.lengths = torch.zeros(b, k, dtype=torch.long, device=dev)
        self.history = torch.empty(b, k, 0, dtype=torch.long, device=dev)
        self.images = torch.arange(b, device=dev)  # the image of every row still decoding
        self.final_scores = torch.empty(b, k, device=dev)
        self.final_lengths = torch.empty(b, k, dtype=torch.long, device=dev)
        self.final_history = torch.full((b, k, max_len + 1), PAD, dtype=torch.long, device=dev)

    def advance(self, logp: Tensor) -> tuple[Tensor, Tensor]:
        """Extends every beam by one token with one ``topk`` over beams × vocabulary.

        Args:
            logp: Next-token log-probabilities of the images still decoding, (A, K, V).

        Returns:
            The decoder-state row each surviving beam continues from, and its new token (both flat).
        """
        a, k, vocab = logp.shape
        cand = logp.add_(self.scores[..., None]).view(a, -1)  # (A, K*V), in place
        self.scores, flat = cand.topk(k, dim=-1)  # (A, K): the one sort over beams × vocabulary
        parent, tokens = flat // vocab, flat % vocab  # (A, K)
        self.history = torch.cat([self.history.gather(1, parent[..., None].expand(-1, -1, self.t)),
                                  tokens[..., None]], dim=-1)  # (A, K, t + 1)
        self.done, self.lengths = self.done.gather(1, parent), self.lengths.gather(1, parent)
        self.lengths += ~self.done  # <END> counts towards the length, padding does not
        self.done |= tokens == END
        self.t += 1
        rows = parent + torch.arange(a, device=logp.device)[:, None] * k  # (A, K)
        finished = self.done.all(dim=1)  # (A,)
        if finished.any():
            self._retire(finished)
            keep = (~finished).nonzero().squeeze(1)
            rows, tokens = rows[keep], tokens[keep]
        return rows.view(-1), tokens.view(-1)

    def force_end(self) -> None:
        """Ends every unfinished beam with ``<END>`` (probability 1: scores unchanged) and retires all images."""
        self.history = torch.cat([self.history, torch.where(self.done, PAD, END)[..., None]], dim=-1)
        self.lengths += ~self.done
        self.t += 1
        self._retire(torch.ones_like(self.images, dtype=torch.bool))

    def _retire(self, finished: Tensor) -> None:
        """Moves the images whose beams have all ended out of the working set."""
        img = self.images[finished]
        self.final_scores[img], self.final_lengths[img] = self.scores[finished], self.lengths[finished]
        self.final_history[img, :, : self.t] = self.history[finished]
        keep = ~finished
        self.images, self.scores, self.done = self.images[keep], self.scores[keep], self.done[keep]
        self.lengths, self.history = self.lengths[keep], self.history[keep]

    def best(self, n_best: int, alpha: float) -> Captions:
        """The ``n_best`` captions per image, ranked by length-normalized score."""
        ranked = self.final_scores / length_penalty(self.final_lengths, alpha)  # (B, K)
        best = ranked.topk(n_best, dim=-1).indices  # (B, n_best)
        history = self.final_history[..., : self.t]
        out = history.gather(1, best[..., None].expand(-1, -1, self.t))
        return Captions(out, ranked.gather(1, best))
