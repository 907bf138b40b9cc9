"""Caption metrics equal to the COCO caption toolkit, in pure Python.

Pure functions over strings and ids (no torch, no Lightning, no Java):
`tokenize` approximates the toolkit's PTB tokenization, and `corpus_bleu`,
`cider_d` and `rouge_l` reproduce pycocoevalcap's Bleu, Cider and Rouge on
tokenized input. `compute_caption_metrics` chains them on raw captions. `Chair` computes CHAIR object
hallucination as the reference implementation does.
"""

from captioning.metrics.bleu import corpus_bleu
from captioning.metrics.caption_metrics import compute_caption_metrics
from captioning.metrics.chair import Chair, ChairResult, ImageChair, Mention, instance_categories
from captioning.metrics.cider import CiderDStatistics, cider_d
from captioning.metrics.rouge import rouge_l, sentence_rouge_l
from captioning.metrics.text import PUNCTUATIONS, ngram_counts, tokenize

__all__ = [
    "Chair",
    "ChairResult",
    "ImageChair",
    "Mention",
    "instance_categories",
    "PUNCTUATIONS",
    "CiderDStatistics",
    "cider_d",
    "compute_caption_metrics",
    "corpus_bleu",
    "ngram_counts",
    "rouge_l",
    "sentence_rouge_l",
    "tokenize",
]
