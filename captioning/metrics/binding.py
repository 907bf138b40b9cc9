"""Binding hallucination: a caption names a (colour, object) pair that the scene does not hold.

CHAIR counts objects that are absent; it cannot see "a yellow circle and a green square" written for a yellow
square and a green circle, where both objects and both colours are present but bound wrongly. For scenes whose
instance annotations carry each object's ``color`` (the built-in shapes data), every object mention directly
preceded by a colour word is a mentioned pair; it is an error when no object of that category in the scene
has that colour. The corpus value is errors / mentioned pairs (0 without pairs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from captioning.metrics.chair import Chair


@dataclass
class ImageBinding:
    """One caption's mentioned ``(colour, category)`` pairs and the ones its scene does not hold."""

    pairs: list[tuple[str, str]]
    errors: list[tuple[str, str]]


@dataclass
class BindingResult:
    """Binding errors of a set of captions: errors / mentioned pairs, and per image."""

    rate: float
    per_image: dict[int, ImageBinding]


def scene_pairs(instances: dict) -> dict[int, set[tuple[str, str]]] | None:
    """Image id -> its ``(colour, category)`` pairs, from an instances dict whose annotations carry ``color``;
    ``None`` when any annotation has no colour (e.g. COCO)."""
    names = {c["id"]: c["name"] for c in instances.get("categories", [])}
    annotations = instances.get("annotations", [])
    if not annotations or any("color" not in a for a in annotations):
        return None
    pairs: dict[int, set[tuple[str, str]]] = {int(i["id"]): set() for i in instances.get("images", [])}
    for a in annotations:
        pairs.setdefault(int(a["image_id"]), set()).add((a["color"], names[a["category_id"]]))
    return pairs


def binding_errors(chair: Chair, captions: Mapping[int, str], scenes: Mapping[int, Iterable[tuple[str, str]]],
                   colours: Iterable[str] | None = None) -> BindingResult:
    """Binding errors of ``captions`` against each image's ``(colour, category)`` pairs.

    Args:
        chair: Maps words to categories (plural and synonym forms included), e.g. ``Chair.from_file("shapes")``.
        captions: Image id -> caption.
        scenes: Image id -> the scene's pairs (see :func:`scene_pairs`).
        colours: The colour words; default: every colour in ``scenes``.
    """
    colours = set(colours) if colours is not None else {c for pairs in scenes.values() for c, _ in pairs}
    per_image: dict[int, ImageBinding] = {}
    for image_id in sorted(captions):
        tokens = chair.tokens(captions[image_id])
        truth = set(scenes.get(image_id, ()))
        pairs = [(tokens[m.index - 1], m.category) for m in chair.mentions(captions[image_id])
                 if m.index > 0 and tokens[m.index - 1] in colours]
        per_image[image_id] = ImageBinding(pairs, [p for p in pairs if p not in truth])
    mentioned = sum(len(r.pairs) for r in per_image.values())
    wrong = sum(len(r.errors) for r in per_image.values())
    return BindingResult(wrong / mentioned if mentioned else 0.0, per_image)
