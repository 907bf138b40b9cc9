"""The vocabularies: words of captions and questions (tokenization, special tokens, encode/decode) and the VQA
answer classes with their soft scores."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

from nltk.tokenize import TreebankWordTokenizer

from captioning.metrics.treebank import split_tokens
from captioning.metrics.vqa import clean_whitespace, normalize_answer, question_accuracy

PAD, START, END, UNK = "<PAD>", "<START>", "<END>", "<UNK>"
SPECIALS = (PAD, START, END, UNK)

_TOKENIZER = TreebankWordTokenizer()  # rule-based: needs no downloaded nltk data


def tokenize(text: str) -> list[str]:
    """Lower-cases and splits a caption into Treebank-style word tokens."""
    return list(_tokenize_cached(text))


@lru_cache(maxsize=1 << 16)
def _tokenize_cached(text: str) -> tuple[str, ...]:
    # Questions and captions repeat a lot (VQA: "what color is the ..."); the Treebank regexes are slow.
    return tuple(split_tokens(text.lower().strip(), _TOKENIZER))


class Vocabulary:
    """A fixed word list with the special tokens ``<PAD> <START> <END> <UNK>`` at ids 0–3.

    Args:
        words: The non-special words, in id order.
    """

    def __init__(self, words: Sequence[str]) -> None:
        clash = [w for w in words if w in SPECIALS]
        if clash:
            raise ValueError(f"vocabulary words clash with special tokens: {clash}")
        self.itos: list[str] = [*SPECIALS, *words]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Builds a vocabulary from training texts, keeping words seen at least ``min_count`` times.

        Words are ordered by decreasing count, then alphabetically, so the result is deterministic.
        """
        counts = Counter(tok for text in texts for tok in tokenize(text))
        kept = [w for w, c in counts.items() if c >= min_count and w not in SPECIALS]
        return cls(sorted(kept, key=lambda w: (-counts[w], w)))

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` wrapped in ``<START> … <END>``; unknown words map to ``<UNK>``."""
        ids = [self.stoi.get(tok, self.unk_id) for tok in tokenize(text)]
        return [self.start_id, *ids, self.end_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Caption text of a generated id sequence: stops at ``<END>``, skips ``<PAD>``/``<START>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            words.append(self.itos[i])
        return " ".join(words)

    def to_dict(self) -> dict:
        """Plain-data form stored in checkpoints (loadable with ``torch.load(weights_only=True)``)."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        """Inverse of :meth:`to_dict`."""
        itos = data.get("itos")
        if not isinstance(itos, list) or tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError("vocabulary data must hold 'itos' starting with " + " ".join(SPECIALS))
        return cls(itos[len(SPECIALS):])


class AnswerVocab:
    """The classifier's answers: normalized training answers seen at least ``min_count`` times (at most
    ``top_k`` of them, most frequent first, ties alphabetical).

    Args:
        answers: The answers, in class-index order.
    """

    def __init__(self, answers: list[str]) -> None:
        self.itos = list(answers)
        self.stoi = {a: i for i, a in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos) or not self.itos:
            raise ValueError("the answer vocabulary must hold at least one answer, each once")

    @classmethod
    def build(cls, annotations: list[dict], min_count: int = 1, top_k: int | None = None) -> AnswerVocab:
        """Counts every annotator's normalized answer over ``annotations``."""
        raw = Counter(a["answer"] for ann in annotations for a in ann["answers"])
        counts: Counter[str] = Counter()
        for answer, n in raw.items():  # normalize each distinct string once
            counts[normalize_answer(answer)] += n
        kept = sorted((a for a, c in counts.items() if c >= min_count and a), key=lambda a: (-counts[a], a))
        if not kept:
            raise ValueError(f"no answer is given at least {min_count} times in the training annotations")
        return cls(kept[:top_k] if top_k else kept)

    def __len__(self) -> int:
        return len(self.itos)

    def targets(self, gt_answers: list[dict]) -> dict[int, float]:
        """Class index → official accuracy, for every vocabulary answer that scores above zero."""
        forms = {clean_whitespace(a["answer"]) for a in gt_answers}
        forms |= {normalize_answer(a) for a in forms}
        scores = {self.stoi[f]: question_accuracy(f, gt_answers) for f in forms if f in self.stoi}
        return {i: s for i, s in scores.items() if s > 0}

    def to_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> AnswerVocab:
        return cls(list(data["itos"]))
