"""Per-caption rewards for self-critical sequence training (Rennie et al. 2017), pure functions over strings."""

from __future__ import annotations

from collections.abc import Sequence

from captioning.metrics.cider import CiderDStatistics, cider_d


def cider_d_scores(captions: Sequence[str], references: Sequence[Sequence[str]],
                   stats: CiderDStatistics) -> list[float]:
    """CIDEr-D of each caption against its own references, with fixed (e.g. training-set) statistics.

    Args:
        captions: Tokenized captions (words joined by spaces).
        references: For each caption, its image's tokenized references.
        stats: Document frequencies, usually of the training references.
    """
    if len(captions) != len(references):
        raise ValueError(f"{len(captions)} captions but {len(references)} reference lists")
    if not captions:
        return []
    keys = range(len(captions))
    _, scores = cider_d(dict(zip(keys, references)), dict(zip(keys, captions)), stats=stats)
    return scores
