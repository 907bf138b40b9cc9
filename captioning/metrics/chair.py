"""CHAIR object hallucination (Rohrbach, Hendricks et al., "Object Hallucination in Image Captioning", 2018).

The same algorithm as the reference implementation (LisaAnne/Hallucination ``utils/chair.py``):

1. A caption is lower-cased, word-tokenized as ``nltk.word_tokenize`` does, and every token singularized as
   Pattern 2.6 does it (:mod:`captioning.metrics.singular`).
2. Two-word phrases are merged left to right (``hot dog``, ``teddy bear``, ``baby bird`` → ``bird``,
   ``passenger train`` → ``train``, ``toilet seat`` → ``toilet``, ...); a ``seat`` in a caption that also
   mentions a toilet is dropped.
3. Words found in the synonym table are object mentions; each maps to its category (the line's first entry).
4. An image's ground truth is its instance categories ∪ the categories mentioned in its reference captions.
   CHAIRs = captions with a hallucinated mention / captions; CHAIRi = hallucinated mentions / all mentions
   (repeats count).

``mode="reference"`` reproduces the reference's numbers, quirks included: ``bus`` and ``glass`` are
singularized to ``bu``/``glas`` and never match; table entries keep the stray spaces, trailing commas and
capitals of the file (so ``motor bike``, ``cheesecake``, ``guy`` and ``iPhone`` never match).
``mode="fixed"`` keeps object words intact when singularizing (:func:`singular.singularize_fixed`) and cleans
the table entries. In both modes a mention's ``index`` is the position of its first token in
:meth:`Chair.tokens` (the reference's indices shift after merged phrases), and CHAIRi of a set of captions
without any mention is 0 (the reference divides by zero).

nltk's ``word_tokenize`` first splits sentences with the Punkt model, a download that is not available
here; :meth:`Chair.tokens` splits after a ``.`` that ends a word and is followed by a space (what Punkt does
for all but its list of abbreviations, which never name COCO objects), then applies nltk's word tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nltk.tokenize import NLTKWordTokenizer

from captioning.metrics.singular import singularize_fixed, singularize_reference
from captioning.metrics.treebank import split_tokens

MODES = ("reference", "fixed")
# Two-word phrases counted as one object word (merged after singularization, as in the reference).
_PHRASES = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate", "train track",
)
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
_PHRASE_MAP = {
    **{p: p for p in _PHRASES},
    **{f"{age} {a}": a for a in _ANIMALS for age in ("baby", "adult")},  # a baby bird is a bird, not a person
    **{f"passenger {v}": v for v in ("jet", "train")},  # a passenger train is a train
    "bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass",
}
_SENTENCE_END = re.compile(r"(?<=\w\.)\s+")
_WORD_TOKENIZER = NLTKWordTokenizer()


@dataclass(frozen=True)
class Mention:
    """One object word in a caption.

    Attributes:
        word: The matched word after singularization and phrase merging, e.g. ``puppy`` for "puppies".
        category: The category it names (first entry of its synonym line).
        index: Position of its first token in :meth:`Chair.tokens` of the caption.
        length: Number of tokens it spans (2 for merged phrases).
    """

    word: str
    category: str
    index: int
    length: int = 1


@dataclass(frozen=True)
class ImageChair:
    """CHAIR of one caption: its mentions, the hallucinated ones, the image's ground-truth categories."""

    mentioned: list[Mention]
    hallucinated: list[Mention]
    ground_truth: list[str]

    @property
    def chair_s(self) -> int:
        return int(bool(self.hallucinated))

    @property
    def chair_i(self) -> float:
        return len(self.hallucinated) / len(self.mentioned) if self.mentioned else 0.0


@dataclass(frozen=True)
class ChairResult:
    """Corpus CHAIRs/CHAIRi (0–1) and the per-image details, keyed by image id."""

    chair_s: float
    chair_i: float
    per_image: dict[int, ImageChair]


TABLES: dict[str, Path] = {  # the packaged synonym tables, by name
    "coco": Path(__file__).with_name("synonyms") / "coco.txt",  # the reference table (LisaAnne/Hallucination)
    "shapes": Path(__file__).with_name("synonyms") / "shapes.txt",  # the built-in shapes scenes
}


def synonyms_path(table: str | Path) -> Path:
    """The file of a synonym table: a packaged table's name (``coco``, ``shapes``) or a path."""
    return TABLES[table] if isinstance(table, str) and table in TABLES else Path(table)


def table_for(category_names: Iterable[str]) -> str | None:
    """The name of the first packaged table whose categories include every name (``None``: none does).

    COCO-style instance files (the 80 COCO categories, or any subset) get ``coco``, shapes files ``shapes``.
    """
    names = set(category_names)
    for name, path in TABLES.items():
        if names and names <= {line[0] for line in read_synonyms(path)}:
            return name
    return None


def read_synonyms(path: str | Path) -> list[list[str]]:
    """The synonym table: one list per line, category first, read as the reference reads it; ``path`` may be
    a packaged table's name (:data:`TABLES`). Lines starting with ``#`` are comments.

    Raises:
        FileNotFoundError: If ``path`` does not exist (the message names it).
        ValueError: If the file has no entries.
    """
    path = synonyms_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CHAIR synonym table not found: {path}")
    lines = [line.strip().split(", ") for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError(f"CHAIR synonym table {path} has no entries")
    return lines


def instance_categories(instances: dict) -> dict[int, list[str]]:
    """Image id → category names of its instance annotations (official ``instances_*.json`` content).

    Raises:
        ValueError: If the dict lacks ``annotations``/``categories`` or an annotation names an unknown category.
    """
    try:
        names = {c["id"]: c["name"] for c in instances["categories"]}
        result: dict[int, list[str]] = {int(i["id"]): [] for i in instances.get("images", [])}
        for ann in instances["annotations"]:
            result.setdefault(int(ann["image_id"]), []).append(names[ann["category_id"]])
    except KeyError as err:
        raise ValueError(f"instances data lacks {err} (expected the official COCO instances format)") from None
    return result


class Chair:
    """The CHAIR metric over one synonym table.

    Args:
        synonyms: Table lines, each ``[category, synonym, ...]`` (see :func:`read_synonyms`).
        mode: ``"reference"`` (numbers identical to the reference implementation) or ``"fixed"``.
        source: Where the table came from (for error messages).
    """

    def __init__(self, synonyms: list[list[str]], mode: str = "reference", source: str = "synonym table") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown CHAIR mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode, self.source = mode, source
        if mode == "fixed":
            synonyms = [[w.strip(" ,").lower() for w in line if w.strip(" ,")] for line in synonyms]
        self.category = {word: line[0] for line in synonyms for word in line}  # word -> category
        phrase_words = {w for phrase in _PHRASE_MAP for w in phrase.split()}
        self._known = frozenset(self.category) | frozenset(phrase_words)

    @classmethod
    def from_file(cls, path: str | Path, mode: str = "reference") -> Chair:
        """A :class:`Chair` over the synonym table at ``path`` (or a packaged table's name)."""
        return cls(read_synonyms(path), mode, source=str(path))

    @property
    def categories(self) -> list[str]:
        """The table's categories, in file order."""
        return list(dict.fromkeys(self.category.values()))

    def tokens(self, caption: str) -> list[str]:
        """The lower-cased word tokens of ``caption``; mention indices point into this list."""
        return [tok for sent in _SENTENCE_END.split(caption.lower()) for tok in split_tokens(sent, _WORD_TOKENIZER)]

    def _singular(self, token: str) -> str:
        return singularize_reference(token) if self.mode == "reference" else singularize_fixed(token, self._known)

    def mentions(self, caption: str) -> list[Mention]:
        """The object mentions of ``caption`` in order (repeats kept)."""
        words = [self._singular(tok) for tok in self.tokens(caption)]
        merged: list[tuple[str, int, int]] = []  # (word, first token index, token count)
        i = 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if pair in _PHRASE_MAP:  # a single last word never matches: phrases have two words
                merged.append((_PHRASE_MAP[pair], i, 2))
                i += 2
            else:
                merged.append((words[i], i, 1))
                i += 1
        if any(w == "toilet" for w, _, _ in merged):  # "the seat of the toilet" is not a chair
            merged = [m for m in merged if m[0] != "seat"]
        return [Mention(w, self.category[w], i, n) for w, i, n in merged if w in self.category]

    def ground_truth(self, instance_categories: Iterable[str], references: Iterable[str]) -> set[str]:
        """An image's ground-truth categories: its instance categories ∪ those its references mention.

        Raises:
            ValueError: If an instance category is not in the synonym table.
        """
        truth = set()
        for name in instance_categories:
            if name not in self.category:
                raise ValueError(f"instance category {name!r} is not in the CHAIR synonym table {self.source}")
            truth.add(self.category[name])
        for ref in references:
            truth.update(m.category for m in self.mentions(ref))
        return truth

    def ground_truths(self, image_ids: Iterable[int], categories: Mapping[int, Iterable[str]],
                      references: Mapping[int, Iterable[str]]) -> dict[int, set[str]]:
        """:meth:`ground_truth` of each image (an image missing from ``categories``/``references`` has none)."""
        return {i: self.ground_truth(categories.get(i, ()), references.get(i, ())) for i in image_ids}

    def evaluate(self, captions: Mapping[int, str], ground_truth: Mapping[int, Iterable[str]]) -> ChairResult:
        """CHAIRs, CHAIRi and per-image details of generated captions.

        Args:
            captions: Image id → generated caption.
            ground_truth: Image id → ground-truth categories (see :meth:`ground_truth`), for every captioned id.

        Raises:
            KeyError: If a captioned image has no ground-truth entry (the message names the id).
        """
        per_image: dict[int, ImageChair] = {}
        for image_id in sorted(captions):
            if image_id not in ground_truth:
                raise KeyError(f"image id {image_id} has a caption but no ground-truth objects")
            truth = set(ground_truth[image_id])
            mentioned = self.mentions(captions[image_id])
            per_image[image_id] = ImageChair(mentioned, [m for m in mentioned if m.category not in truth],
                                             sorted(truth))
        mentions = sum(len(r.mentioned) for r in per_image.values())
        hallucinated = sum(len(r.hallucinated) for r in per_image.values())
        chair_s = sum(r.chair_s for r in per_image.values()) / len(per_image) if per_image else 0.0
        return ChairResult(chair_s, hallucinated / mentions if mentions else 0.0, per_image)
