"""Co-occurrence bias for the shapes generator: which scenes may hold which pairs of objects.

A *member* is a shape (``"circle"``) or a colour and a shape (``"red circle"``); a *pair* is two
members. For each pair, a scene holds 0, 1 or 2 of its members (its *status*). A biased split draws
a scene's *target* status from the natural one: an untouched pair (0) stays untouched, a touched
pair becomes 2 with probability ``rate`` and 1 (exactly one member, never the partner) otherwise.
The generator then redraws the scene until its status equals the target, so the share of scenes
that touch a pair stays natural and, among them, the pair co-occurs at ``rate``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

Member = tuple[str, str]  # (colour or "", shape)


def _parse_member(text: str, shapes: Collection[str], colours: Collection[str]) -> Member:
    words = text.split() if isinstance(text, str) else []
    if len(words) == 1 and words[0] in shapes:
        return "", words[0]
    if len(words) == 2 and words[0] in colours and words[1] in shapes:
        return words[0], words[1]
    raise ValueError(f"cooccur_pairs: {text!r} is not a shape ({', '.join(shapes)}) or "
                     f"'colour shape' with a colour in ({', '.join(colours)})")


def _overlap(a: Member, b: Member) -> bool:
    """Whether one object can be both members (same shape, and colours equal or unspecified)."""
    return a[1] == b[1] and (not a[0] or not b[0] or a[0] == b[0])


def parse_pairs(pairs: Sequence[Sequence[str]], rates: Sequence[float | None], max_objects: int,
                shapes: Collection[str], colours: Collection[str]) -> tuple[tuple[Member, Member], ...]:
    """Validates the bias options and returns the pairs as ``((colour, shape), (colour, shape))``.

    Args:
        pairs: Pairs of member names, e.g. ``[("circle", "square")]`` or ``[("red circle", "blue square")]``.
        rates: The co-occurrence rates of the splits (``None`` = natural split).
        max_objects: Largest number of objects in one scene.
        shapes: Valid shape names.
        colours: Valid colour names.

    Returns:
        The parsed pairs (empty when ``pairs`` is empty).

    Raises:
        ValueError: On an unknown name, a malformed or overlapping pair, a rate outside [0, 1],
            rates without pairs or pairs without a rate, or too few objects per scene.
    """
    if isinstance(pairs, str) or any(isinstance(p, str) or len(p) != 2 for p in pairs):
        raise ValueError(f"cooccur_pairs must be a list of 2-member pairs, got {pairs!r}")
    parsed = tuple(tuple(_parse_member(m, shapes, colours) for m in p) for p in pairs)
    given = [r for r in rates if r is not None]
    if any(not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0 for r in given):
        raise ValueError(f"cooccur rates must be None or in [0, 1], got {list(rates)}")
    if not parsed:
        if given:
            raise ValueError("a cooccur rate was given without cooccur_pairs")
        return ()
    if not given:
        raise ValueError("cooccur_pairs needs cooccur_rate and/or cooccur_rate_test")
    members = [m for p in parsed for m in p]
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            if _overlap(a, b):
                raise ValueError(f"cooccur_pairs: members {' '.join(filter(None, a))!r} and "
                                 f"{' '.join(filter(None, b))!r} overlap (one object could be both)")
    if any(r > 0 for r in given) and max_objects < 2 * len(parsed):
        raise ValueError(f"{len(parsed)} co-occurring pair(s) need max_objects >= {2 * len(parsed)}")
    return parsed


@dataclass(frozen=True)
class CooccurrenceBias:
    """The pairs of a biased split and the rate at which they co-occur in it."""

    pairs: tuple[tuple[Member, Member], ...]
    rate: float

    def status(self, shapes: Sequence[str], colours: Sequence[str]) -> tuple[int, ...]:
        """Per pair, how many of its two members the scene's objects include (0, 1 or 2)."""
        objs = list(zip(colours, shapes))
        return tuple(sum(any(_overlap(m, o) for o in objs) for m in pair) for pair in self.pairs)

    def draw_target(self, rng: np.random.Generator, status: tuple[int, ...]) -> tuple[int, ...]:
        """The status a redrawn scene must have: touched pairs get 2 with probability ``rate``."""
        return tuple(0 if s == 0 else (2 if rng.random() < self.rate else 1) for s in status)
