"""CIDEr-D as computed by the COCO caption toolkit (pycocoevalcap's ``Cider``).

The toolkit's ``Cider`` scorer is CIDEr-D: tf-idf n-gram vectors whose idf
comes from the document frequencies of the references, hypothesis weights
clipped by the reference weights, a Gaussian length penalty, ×10, averaged
over the references of an image and over n-gram orders.

For self-critical training, the document frequencies are usually computed
once from the training references: build a `CiderDStatistics` with
`CiderDStatistics.from_references` and pass it as ``stats``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from captioning.metrics.text import check_same_ids, ngram_counts

_Vector = list[dict[tuple[str, ...], float]]


@dataclass(frozen=True)
class CiderDStatistics:
    """Corpus statistics behind CIDEr-D's idf weights.

    Attributes:
        document_frequency: For each n-gram, the number of images whose
            references (any of them) contain it; n-grams of fewer than two
            images may be left out (their idf is that of an unseen n-gram).
        ref_len: Natural log of the number of images of the corpus.
        n: Largest n-gram order counted.
    """

    document_frequency: Mapping[tuple[str, ...], float]  # counts (int, or float from older caches)
    ref_len: float
    n: int = 4

    @classmethod
    def from_references(
        cls,
        references: Mapping[Hashable, Sequence[str]] | Iterable[Sequence[str]],
        n: int = 4,
    ) -> CiderDStatistics:
        """Counts document frequencies over the references of a corpus.

        Args:
            references: Tokenized reference captions per image, either as a
                mapping from image id or as an iterable of per-image lists.
            n: Largest n-gram order.

        Returns:
            The statistics, one "document" per image.

        Raises:
            ValueError: If there are no images.
        """
        groups = references.values() if isinstance(references, Mapping) else references
        frequency: dict[tuple[str, ...], int] = {}
        words: dict[str, str] = {}  # one string per distinct word, shared by every n-gram tuple
        num_images = 0
        for refs in groups:
            num_images += 1
            grams = {gram for ref in refs for gram in ngram_counts([words.setdefault(w, w) for w in ref.split()], n)}
            for gram in grams:
                frequency[gram] = frequency.get(gram, 0) + 1
        if num_images == 0:
            raise ValueError("cannot compute CIDEr-D statistics from zero images")
        # An n-gram of a single image weighs as one of none (idf log(max(1, df)) = 0): most n-grams of a large
        # corpus occur once, so they are not kept.
        return cls({gram: count for gram, count in frequency.items() if count > 1}, math.log(float(num_images)), n)


def cider_d(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    n: int = 4,
    sigma: float = 6.0,
    stats: CiderDStatistics | None = None,
) -> tuple[float, list[float]]:
    """Computes CIDEr-D exactly like ``pycocoevalcap``'s ``Cider``.

    Args:
        references: Image id -> tokenized reference captions (at least one).
        hypotheses: Image id -> tokenized hypothesis; same ids as references.
        n: Largest n-gram order.
        sigma: Standard deviation of the Gaussian length penalty.
        stats: Precomputed document frequencies (e.g. of a training set).
            Defaults to those of ``references``, as the toolkit does.

    Returns:
        ``(mean, per_image)``: the corpus score as the toolkit reports it
        (not ×100) and the score of each image in the iteration order of
        ``references``.

    Raises:
        ValueError: If the id sets differ, an image has no references, or
            ``stats`` counts fewer n-gram orders than ``n``.
    """
    check_same_ids(references, hypotheses)
    if stats is None:
        stats = CiderDStatistics.from_references(references, n)
    elif stats.n < n:
        raise ValueError(f"stats count n-grams up to {stats.n}, but n={n}")
    scores = [
        _image_score(hypotheses[key], refs, stats, n, sigma)
        for key, refs in references.items()
    ]
    total = 0.0
    for score in scores:
        total += score
    return total / len(scores), scores


def _image_score(
    hypothesis: str, refs: Sequence[str], stats: CiderDStatistics, n: int, sigma: float
) -> float:
    """CIDEr-D of one hypothesis: mean over orders and references, ×10."""
    hyp = _tfidf(hypothesis, stats, n)
    totals = [0.0] * n
    for ref in refs:
        for k, value in enumerate(_similarity(hyp, _tfidf(ref, stats, n), sigma)):
            totals[k] += value
    mean = 0.0
    for value in totals:
        mean += value
    return mean / n / len(refs) * 10.0


def _tfidf(caption: str, stats: CiderDStatistics, n: int) -> tuple[_Vector, list[float], int]:
    """Tf-idf vectors (one per order), their norms, and the caption "length".

    Like the toolkit, the length is the number of bigrams, not of words.
    """
    vectors: _Vector = [{} for _ in range(n)]
    squares = [0.0] * n
    length = 0
    for gram, term_freq in ngram_counts(caption.split(), n).items():
        df = math.log(max(1.0, stats.document_frequency.get(gram, 0.0)))
        order = len(gram) - 1
        weight = float(term_freq) * (stats.ref_len - df)
        vectors[order][gram] = weight
        squares[order] += weight * weight
        if order == 1:
            length += term_freq
    return vectors, [math.sqrt(value) for value in squares], length


def _similarity(
    hyp: tuple[_Vector, list[float], int],
    ref: tuple[_Vector, list[float], int],
    sigma: float,
) -> list[float]:
    """Clipped cosine similarity per order, times the length penalty."""
    (hyp_vecs, hyp_norms, hyp_len), (ref_vecs, ref_norms, ref_len) = hyp, ref
    delta = float(hyp_len - ref_len)
    penalty = math.e ** (-(delta**2) / (2 * sigma**2))
    values = []
    for k, hyp_vec in enumerate(hyp_vecs):
        ref_vec = ref_vecs[k]
        value = 0.0
        for gram, weight in hyp_vec.items():
            ref_weight = ref_vec.get(gram, 0.0)
            value += min(weight, ref_weight) * ref_weight
        if hyp_norms[k] != 0 and ref_norms[k] != 0:
            value /= hyp_norms[k] * ref_norms[k]
        values.append(value * penalty)
    return values
