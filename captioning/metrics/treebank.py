"""nltk's Treebank word tokenizers with a fast path for plain text.

``TreebankWordTokenizer`` (the vocabulary's) and ``NLTKWordTokenizer`` (CHAIR's) run about 30 regular
expressions per caption, some 0.2 ms each; over COCO's 414k training captions that was most of the set-up
time (docs/scale.md). On text made only of lower-case ASCII letters, digits, spaces, commas (none followed by
a digit or another comma) and at most one final period, both return ``text.split()`` with every comma and the
final period as tokens of their own, unless a word is one of the fused forms they split ("cannot" → "can",
"not"). :func:`split_tokens` returns exactly that without the regular expressions and hands any other text to
the tokenizer; tests compare it with both nltk tokenizers on random strings and on real COCO captions.
"""

from __future__ import annotations

import re
from typing import Protocol

_PLAIN = re.compile(r"[a-z0-9 ,]*\.?\Z")
_COMMA_BEFORE_DIGIT_OR_COMMA = re.compile(r",[\d,]")  # "3,000" and ",," follow other rules
_FUSED = frozenset({"cannot", "gimme", "gonna", "gotta", "lemme", "wanna"})  # nltk's MacIntyre contractions


class WordTokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...


def split_tokens(text: str, tokenizer: WordTokenizer) -> list[str]:
    """``tokenizer.tokenize(text)`` for nltk's Treebank-family tokenizers, without their regular expressions
    when ``text`` is plain (see the module docstring)."""
    if _PLAIN.match(text) and not _COMMA_BEFORE_DIGIT_OR_COMMA.search(text):
        body, end = (text[:-1], ["."]) if text.endswith(".") else (text, [])
        words = body.replace(",", " , ").split() + end
        if _FUSED.isdisjoint(words):
            return words
    return tokenizer.tokenize(text)
