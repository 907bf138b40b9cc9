"""ROUGE-L as computed by the COCO caption toolkit (pycocoevalcap)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from captioning.metrics.text import check_same_ids


def rouge_l(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    beta: float = 1.2,
) -> tuple[float, list[float]]:
    """Computes ROUGE-L exactly like ``pycocoevalcap``'s ``Rouge``.

    For each image, the longest common subsequence (LCS) of the hypothesis
    with each reference gives a precision ``lcs / len(hyp)`` and a recall
    ``lcs / len(ref)``; the best precision and the best recall over the
    references (taken separately, as the toolkit does) are combined into an
    F-measure weighted by ``beta``. Captions are split on single spaces, like
    the toolkit, so an empty caption counts as one empty token.

    Args:
        references: Image id -> tokenized reference captions (at least one).
        hypotheses: Image id -> tokenized hypothesis; same ids as references.
        beta: Weight of recall relative to precision.

    Returns:
        ``(mean, per_image)``: the mean over images and the score of each
        image in the iteration order of ``references``.

    Raises:
        ValueError: If the id sets differ or an image has no references.
    """
    check_same_ids(references, hypotheses)
    scores = [
        sentence_rouge_l(hypotheses[key], refs, beta) for key, refs in references.items()
    ]
    total = 0.0
    for score in scores:
        total += score
    return total / len(scores), scores


def sentence_rouge_l(hypothesis: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L of one tokenized hypothesis against its tokenized references.

    Args:
        hypothesis: Tokens joined by single spaces.
        references: Reference captions in the same format (at least one).
        beta: Weight of recall relative to precision.

    Returns:
        The toolkit's ROUGE-L F-measure, in [0, 1].
    """
    candidate = hypothesis.split(" ")
    best_precision = 0.0
    best_recall = 0.0
    for reference in references:
        ref_tokens = reference.split(" ")
        lcs = _lcs_length(ref_tokens, candidate)
        best_precision = max(best_precision, lcs / float(len(candidate)))
        best_recall = max(best_recall, lcs / float(len(ref_tokens)))
    if best_precision == 0 or best_recall == 0:
        return 0.0
    return ((1 + beta**2) * best_precision * best_recall) / float(
        best_recall + beta**2 * best_precision
    )


def _lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(first) < len(second):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0] * (len(second) + 1)
        for j, other in enumerate(second, start=1):
            if token == other:
                current[j] = previous[j - 1] + 1
            else:
                current[j] = max(previous[j], current[j - 1])
        previous = current
    return previous[-1]
