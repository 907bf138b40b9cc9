"""COCO-style caption evaluation (BLEU-1..4, ROUGE-L, CIDEr-D) without Java."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from captioning.metrics.bleu import corpus_bleu
from captioning.metrics.cider import cider_d
from captioning.metrics.rouge import rouge_l
from captioning.metrics.text import check_same_ids, tokenize


def compute_caption_metrics(
    references: Mapping[int, Sequence[str]], predictions: Mapping[int, str]
) -> dict[str, float]:
    """Scores raw predicted captions against raw references like the toolkit.

    Captions are tokenized with `tokenize` (the toolkit's PTB tokenization
    without Java), then scored with BLEU-1..4, ROUGE-L and CIDEr-D as
    ``pycocoevalcap`` does. Images are visited in sorted id order, so the
    result does not depend on the order of the mappings.

    Args:
        references: Image id -> raw reference captions (at least one each).
        predictions: Image id -> raw predicted caption, for the same ids.

    Returns:
        ``{"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}`` on
        the toolkit's scale (0-1 for BLEU and ROUGE-L; CIDEr as the toolkit
        reports it, e.g. 0.95, not ×100).

    Raises:
        ValueError: If a prediction has no references, an image has
            references but no prediction, or there is nothing to score; the
            message names the offending image id.
        TypeError: If a prediction is not a string.
    """
    return caption_scores(references, predictions)[0]


def caption_scores(references: Mapping[int, Sequence[str]], predictions: Mapping[int, str]
                   ) -> tuple[dict[str, float], dict[str, list[float]], list[int]]:
    """:func:`compute_caption_metrics` with each image's values too: corpus values, metric name -> per-image
    values (in the order of the returned ids), and the ids (sorted). Used by training and by the Java-free
    backend of ``captioning evaluate``."""
    check_same_ids(references, predictions)
    ids = _ordered_ids(references)
    gts = {key: [" ".join(tokenize(ref)) for ref in references[key]] for key in ids}
    res = {key: " ".join(tokenize(predictions[key])) for key in ids}
    bleu, bleu_images = corpus_bleu(gts, res, n=4)
    rouge, rouge_images = rouge_l(gts, res)
    cider, cider_images = cider_d(gts, res)
    corpus = {f"Bleu_{k + 1}": float(score) for k, score in enumerate(bleu)}
    per_image = {f"Bleu_{k + 1}": [float(x) for x in values] for k, values in enumerate(bleu_images)}
    corpus["ROUGE_L"], per_image["ROUGE_L"] = float(rouge), [float(x) for x in rouge_images]
    corpus["CIDEr"], per_image["CIDEr"] = float(cider), [float(x) for x in cider_images]
    return corpus, per_image, ids


def _ordered_ids(references: Mapping[int, Sequence[str]]) -> list[int]:
    """The image ids in sorted order (insertion order if not sortable)."""
    try:
        return sorted(references)
    except TypeError:
        return list(references)
