"""Character corpora and a character vocabulary for the char-level language model.

Corpora: the lecture's ``"hello"``, this repository's own Python source (the default real text), or any
UTF-8 text file. Characters are ids of a :class:`captioning.data.vocab.Vocabulary`, so ids 0–3 are
``<PAD> <START> <END> <UNK>`` and the shared decoding functions work on characters unchanged.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

import captioning
from captioning.data.vocab import Vocabulary

HELLO = "hello"
PACKAGE_ROOT = Path(captioning.__file__).resolve().parent
UNKNOWN_CHAR = "\ufffd"  # how <UNK> is shown when decoding


def source_text(root: str | Path = PACKAGE_ROOT, pattern: str = "**/*.py") -> str:
    """The files under ``root`` matching ``pattern``, sorted by path and joined (each ends with a newline).

    Args:
        root: Directory to read; default: the ``captioning`` package of this repository.
        pattern: Glob of the files to read.
    """
    root = Path(root)
    files = sorted(p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r} under {root}")
    texts = [p.read_text(encoding="utf-8") for p in files]
    return "".join(t if t.endswith("\n") else t + "\n" for t in texts)


def load_corpus(name: str) -> str:
    """A corpus by name: ``"hello"``, ``"source"`` (this package's ``*.py``) or the path of a UTF-8 text file."""
    if name == "hello":
        return HELLO
    if name == "source":
        return source_text()
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"corpus {name!r} is neither 'hello', 'source' nor an existing text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None


def char_vocab(text: str) -> Vocabulary:
    """A vocabulary of the distinct characters of ``text`` in sorted order, after the four special tokens."""
    return Vocabulary(sorted(set(text)))


def encode(vocab: Vocabulary, text: str) -> Tensor:
    """Character ids of ``text``, (N,); characters outside the vocabulary map to ``<UNK>``."""
    return torch.tensor([vocab.stoi.get(ch, vocab.unk_id) for ch in text], dtype=torch.long)


def decode(vocab: Vocabulary, ids: Tensor | list[int]) -> str:
    """Text of character ids: stops at ``<END>``, skips ``<PAD>``/``<START>``, shows ``<UNK>`` as U+FFFD."""
    chars = []
    for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
        if i == vocab.end_id:
            break
        if i in (vocab.pad_id, vocab.start_id):
            continue
        chars.append(UNKNOWN_CHAR if i == vocab.unk_id else vocab.itos[i])
    return "".join(chars)


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """Splits ``text`` into a training head and a held-out tail of about ``val_fraction`` of it."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(text) * (1.0 - val_fraction)))
    return text[:cut], text[cut:]


def unigram_bits(train: Tensor, held_out: Tensor, vocab_size: int) -> float:
    """Bits per character of an add-one-smoothed unigram model of ``train`` on ``held_out``.

    This is the baseline a language model must beat: it knows each character's frequency but no context.
    """
    counts = Counter(train.tolist())
    total = len(train) + vocab_size
    bits = sum(-math.log2((counts.get(i, 0) + 1) / total) for i in held_out.tolist())
    return bits / max(1, len(held_out))
