"""The tokenizers' fast paths return exactly what the slow paths return: nltk's Treebank tokenizers on plain
text (``metrics/treebank.py``), and the toolkit tokenizer's per-word cache (``metrics/text.py``)."""

from __future__ import annotations

import json
import random

import pytest
from nltk.tokenize import NLTKWordTokenizer, TreebankWordTokenizer

from captioning.metrics import text
from captioning.metrics.singular import singularize_reference
from captioning.metrics.treebank import split_tokens
from conftest import SHARED, require_shared

TOKENIZERS = [TreebankWordTokenizer(), NLTKWordTokenizer()]
PIECES = ["a", "dog", "cat", "cannot", "can", "not", "gonna", "wanna", "gotta", "lemme", "gimme", "1", "23", "x9",
          " ", "  ", ",", ".", ", ", " ,", "0,5", "9,", "'s", "n't", "(", "!", "...", "St.", "-", "\"", "Dog"]


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))).strip() for _ in range(n)]


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: type(t).__name__)
def test_plain_text_fast_path_equals_nltk_on_random_text(tokenizer) -> None:
    for t in random_texts(20_000):
        assert split_tokens(t, tokenizer) == tokenizer.tokenize(t), t


def test_fast_path_covers_plain_captions_and_splits_fused_words() -> None:
    tb = TreebankWordTokenizer()
    assert split_tokens("a man, a dog and 2 cats.", tb) == ["a", "man", ",", "a", "dog", "and", "2", "cats", "."]
    assert split_tokens("he cannot wait", tb) == ["he", "can", "not", "wait"]  # nltk's own split, kept


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: type(t).__name__)
def test_fast_path_equals_nltk_on_real_coco_captions(tokenizer) -> None:
    require_shared("coco-mini")
    captions = [a["caption"] for f in sorted((SHARED / "coco-mini" / "annotations").glob("captions_*.json"))
                for a in json.loads(f.read_text())["annotations"]]
    assert len(captions) > 500
    for c in captions:
        t = c.lower().strip()
        assert split_tokens(t, tokenizer) == tokenizer.tokenize(t), c


def _uncached_tokenize(caption: str) -> list[str]:
    """The toolkit tokenizer without the per-word cache: every chunk sees the chunk that follows it."""
    chunks = caption.translate(text._UNICODE_MAP).replace("&amp;", "&").split()
    tokens = [t for i, c in enumerate(chunks)
              for t in text._split_chunk(c, " " + chunks[i + 1] if i + 1 < len(chunks) else "")]
    return [tok for tok in (t.lower() for t in tokens) if tok not in text.PUNCTUATIONS]


def test_toolkit_tokenizer_cache_changes_nothing() -> None:
    abbreviations = ["St. Louis", "no. 5", "Mr. Smith", "the U.S.", "a dog., a cat", "No. 10 bus", "etc. and"]
    for caption in [*random_texts(5_000, seed=1), *abbreviations]:
        assert text.tokenize(caption) == _uncached_tokenize(caption), caption


def test_singularize_reference_cache_returns_the_same_words() -> None:
    words = ["dogs", "buses", "mothers-in-law", "sheep", "knives", "boys'", "analyses"]
    first = [singularize_reference(w) for w in words]
    assert first == [singularize_reference(w) for w in words] == [
        singularize_reference.__wrapped__(w) for w in words]
