"""Corpus BLEU as computed by the COCO caption toolkit (pycocoevalcap)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from captioning.metrics.text import check_same_ids, ngram_counts

# The toolkit's smoothing constants: "tiny" keeps zero matches at (almost)
# zero, "small" avoids dividing by zero guesses.
_TINY = 1e-15
_SMALL = 1e-9


@dataclass
class _BleuStats:
    """Sufficient statistics of one hypothesis (or of the whole corpus)."""

    test_len: int
    ref_len: int
    guess: list[int]
    correct: list[int]


def corpus_bleu(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    n: int = 4,
) -> tuple[list[float], list[list[float]]]:
    """Computes corpus BLEU-1..n exactly like ``pycocoevalcap``'s ``Bleu(n)``.

    Inputs are tokenized captions (tokens joined by spaces), as passed to
    ``Bleu(n).compute_score(gts, res)``. N-gram matches are clipped by the
    maximum count over an image's references; the reference length of an
    image is the one closest to the hypothesis length (ties go to the shorter
    one, the toolkit's "closest" option); the brevity penalty and the
    smoothing constants (1e-15 / 1e-9) are the toolkit's.

    Args:
        references: Image id -> tokenized reference captions (at least one).
        hypotheses: Image id -> tokenized hypothesis; same ids as references.
        n: Largest n-gram order.

    Returns:
        ``(scores, per_image)``: ``scores[k]`` is corpus BLEU-(k+1) and
        ``per_image[k][i]`` is the BLEU-(k+1) of the i-th image of
        ``references`` (in its iteration order), as the toolkit reports them.

    Raises:
        ValueError: If the id sets differ or an image has no references.
    """
    check_same_ids(references, hypotheses)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    total = _BleuStats(0, 0, [0] * n, [0] * n)
    per_image: list[list[float]] = [[] for _ in range(n)]
    for key, refs in references.items():
        stats = _image_stats(hypotheses[key], refs, n)
        total.test_len += stats.test_len
        total.ref_len += stats.ref_len
        for k in range(n):
            total.guess[k] += stats.guess[k]
            total.correct[k] += stats.correct[k]
        for k, score in enumerate(_bleu(stats)):
            per_image[k].append(score)
    return _bleu(total), per_image


def _image_stats(hypothesis: str, refs: Sequence[str], n: int) -> _BleuStats:
    """Counts the clipped n-gram matches of one hypothesis."""
    ref_lens: list[int] = []
    max_counts: dict[tuple[str, ...], int] = {}
    for ref in refs:
        words = ref.split()
        ref_lens.append(len(words))
        for gram, count in ngram_counts(words, n).items():
            max_counts[gram] = max(max_counts.get(gram, 0), count)
    words = hypothesis.split()
    test_len = len(words)
    correct = [0] * n
    for gram, count in ngram_counts(words, n).items():
        correct[len(gram) - 1] += min(max_counts.get(gram, 0), count)
    closest = min((abs(length - test_len), length) for length in ref_lens)[1]
    guess = [max(0, test_len - k) for k in range(n)]
    return _BleuStats(test_len, closest, guess, correct)


def _bleu(stats: _BleuStats) -> list[float]:
    """BLEU-1..n from sufficient statistics, with the toolkit's arithmetic."""
    scores: list[float] = []
    product = 1.0
    for k, (correct, guess) in enumerate(zip(stats.correct, stats.guess)):
        product *= (float(correct) + _TINY) / (float(guess) + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (stats.test_len + _TINY) / (stats.ref_len + _SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [score * penalty for score in scores]
    return scores
