"""CHAIR of a set of captions against instance annotations and references, for ``captioning evaluate`` and
the gallery (the metric itself is :mod:`captioning.metrics.chair`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioning.metrics.binding import BindingResult, binding_errors, scene_pairs
from captioning.metrics.chair import Chair, ChairResult, instance_categories


@dataclass
class ChairScores:
    """CHAIR of one set of captions: the metric object (for tokens) and its result, and binding errors where
    the instance annotations carry colours (shapes)."""

    chair: Chair
    result: ChairResult
    binding: BindingResult | None = None


def chair_scores(captions: Mapping[int, str], references: Mapping[int, Sequence[str]], instances: dict,
                 synonyms: str | Path, mode: str = "reference") -> ChairScores:
    """CHAIR of ``captions``; ground truth = instance categories ∪ objects mentioned in the references; binding
    errors too when every instance annotation has a ``color``.

    Args:
        captions: Image id -> generated caption.
        references: Image id -> reference captions (may be empty for an image).
        instances: An official ``instances_*.json`` dict.
        synonyms: The synonym table (COCO: the CHAIR reference table; shapes: its own).
        mode: ``reference`` (reproduces LisaAnne/Hallucination) or ``fixed`` (its quirks fixed).
    """
    chair = Chair.from_file(synonyms, mode=mode)
    truth = chair.ground_truths(captions, instance_categories(instances), references)
    scenes = scene_pairs(instances)
    return ChairScores(chair, chair.evaluate(captions, truth),
                       None if scenes is None else binding_errors(chair, captions, scenes))


def mention_dicts(mentions: Sequence[Any]) -> list[dict]:
    """Mentions as JSON objects ``{"word", "category", "index", "length"}`` (``index``: first token in
    ``chair.tokens(caption)``; ``length``: tokens spanned)."""
    return [{"word": m.word, "category": m.category, "index": m.index, "length": m.length} for m in mentions]
