"""Caption tokenization and input checks shared by the caption metrics.

`tokenize` is a Java-free approximation of the tokenization step of the COCO
caption toolkit (pycocoevalcap): the Stanford PTBTokenizer (CoreNLP 3.4.1, run
with ``-preserveLines -lowerCase``) followed by the removal of the toolkit's
punctuation tokens.

On plain word captions (letters, digits, spaces, and the usual punctuation
``. , ; : ! ? ' " ( ) -``, possessives and contractions) it produces exactly the
tokens of the Java pipeline. Known differences are confined to rare inputs:
URLs and e-mail addresses, emoticons, SGML-like tags, abbreviations the Java
lexer knows but this module does not, and a few odd punctuation clusters.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache

# Tokens the toolkit drops after PTB tokenization (pycocoevalcap's
# tokenizer/ptbtokenizer.py). The bracket names are upper case there while the
# Java tokenizer (run with -lowerCase) emits "-lrb-" etc., so those are kept.
PUNCTUATIONS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
     ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Abbreviations whose final period stays attached in any context.
_ALWAYS_ABBREVIATIONS = frozenset(
    """adj adm adv al ala alex apr ariz assn assoc atty aug ave bhd bldg blvd
    brig bros calif capt cf cie co col colo comdr conn corp cos cpl ct dec dept
    det dr drs elec ens esq est etc ext feb fla fri ft ga gen gov hon inc ind
    insp intl invt jan jr jul jun kan kans ky lt ltd maj mar md messrs mich
    minn mlle mme mo mon mont mr mrs ms msgr mt natl neb nev nov oct okla penn
    ph ph.d plc pres prof profs pvt rd rep reps rev rt sen sens sep sept seq sfc
    sgt spc sq sr st ste supt sys tel tenn thu thurs treas tue tues univ va vs
    vt wed wis wisc wm wyo""".split()
)
# Abbreviations kept only when the next word starts with a digit ("no. 5").
_NUMBER_ABBREVIATIONS = frozenset("no nos fig figs op art ca pp prop".split())
# Abbreviations kept only when capitalized ("Mass.", "Wash.").
_CAPITALIZED_ABBREVIATIONS = frozenset(
    "ark az del ill la mass miss ore pa tex wash".split()
)
# Abbreviations kept unless written in capitals.
_NOT_UPPER_ABBREVIATIONS = frozenset(["pty", "mfg"])
_HASHTAG_RE = re.compile(r"#[^\W\d_][^\W_]*")
# Letters with periods: "a.", "u.s.", "a.m.".
_INITIALS_RE = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")

# Words the PTB tokenizer splits in two.
_SPLIT_WORDS = {
    "cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
    "wanna": ["wan", "na"], "gimme": ["gim", "me"], "lemme": ["lem", "me"],
}
# Tokens never split further (standalone clitics, quote tokens, '80s...).
_WHOLE_RE = re.compile(
    r"(?i:'(?:s|m|d|re|ve|ll|em|cause|til|n'?)|n't)|``|''|'|'\d\d(?i:s)?|--|\.\.\."
)
_CLITIC_RE = re.compile(r"(?i)(.+?)(n't|'s|'m|'d|'re|'ve|'ll)")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-",
             "{": "-lcb-", "}": "-rcb-"}
_TRAILING_RE = re.compile(r"(''|'|[!?]+|[$@/]|(?<!#)#|-{2,}|-)$")
_LEADING_RE = re.compile(
    r"``|''|`|'t(?=(?i:is|was)$)"
    r"|'(?!(?i:s|m|d|re|ve|ll|em|cause|til|n'?)(?![^\W_])|\d\d(?i:s)?(?![^\W_]|[:,]\d))"
    r"|-{2,}|-(?!\d)|\.(?!\d)|[!?]+|[$*~=/]|#(?![^\W\d_]|#)|\+(?!\d)"
)
# Punctuation split off wherever it occurs in a chunk (the "&" of "AT&T" and
# the "," / ":" of "1,000" / "10:30" excepted).
_INTERNAL_RE = re.compile(
    r"(-{2,}|\.{2,}|(?<=\w)''(?=\w)|[()\[\]{}\"%*=~]|&(?![A-Z])|(?<![A-Z])&|(?<=[^#])#"
    r"|(?<=\d)'(?=\d)|(?<!\d)[,;:]|[,;:](?!\d)|(?<=[^\W\d_])\+(?=[^\W\d_]))"
)
_UNICODE_MAP = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'",
    "\u2026": "...", "\u2014": " -- ", "\u2013": " -- ", "\u00a0": " ",
})


def tokenize(caption: str) -> list[str]:
    """Tokenizes a raw caption like the COCO caption toolkit does.

    Lower-cases, splits off punctuation, clitics and brackets the way the
    Stanford PTB tokenizer does, then drops the punctuation tokens the toolkit
    removes (`PUNCTUATIONS`). The result equals the toolkit's Java pipeline
    on plain word captions; see the module docstring for the rare differences.

    Args:
        caption: A raw, untokenized caption.

    Returns:
        The lower-case tokens, e.g. ``["a", "man", "'s", "dog"]`` for
        ``"A man's dog."``.
    """
    text = caption.translate(_UNICODE_MAP).replace("&amp;", "&")
    chunks = text.split()
    tokens: list[str] = []
    for index, chunk in enumerate(chunks):
        # Only a period consults the next chunk (is "St." an abbreviation?); other chunks split the same
        # wherever they stand, so the cache below sees each distinct word once.
        following = " " + chunks[index + 1] if "." in chunk and index + 1 < len(chunks) else ""
        tokens.extend(_chunk_tokens(chunk, following))
    return tokens


@lru_cache(maxsize=1 << 18)
def _chunk_tokens(chunk: str, following: str) -> tuple[str, ...]:
    """The kept lower-case tokens of one chunk (PTB split, punctuation dropped); cached: captions repeat words."""
    return tuple(tok for tok in (t.lower() for t in _split_chunk(chunk, following)) if tok not in PUNCTUATIONS)


def _split_chunk(chunk: str, following: str) -> list[str]:
    """Splits one whitespace-delimited chunk into PTB tokens (original case)."""
    pieces = _INTERNAL_RE.split(chunk)
    for index in range(1, len(pieces), 2):
        stem = _peel_leading(pieces[index - 1])[1]
        if pieces[index][0] == "." and _is_abbreviation(stem, ""):
            # "Mr..." is "Mr." then "..": the abbreviation keeps one period.
            pieces[index - 1] += "."
            pieces[index] = pieces[index][1:]
    tokens: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            closing = not pieces[index + 1]
            tokens.extend(_punctuation_tokens(piece, closing=closing))
        elif piece:
            last = index == len(pieces) - 1
            tokens.extend(_split_piece(piece, following if last else pieces[index + 1]))
    return tokens


def _split_piece(piece: str, following: str) -> list[str]:
    """Splits a chunk piece free of internal punctuation into PTB tokens."""
    hashtag = _HASHTAG_RE.match(piece)
    if hashtag is not None and hashtag.end() < len(piece):
        return [hashtag.group()] + _split_piece(piece[hashtag.end():], following)
    head, piece = _peel_leading(piece)
    piece, tail = _peel_trailing(piece, following)
    return head + _split_word(piece) + tail


def _peel_leading(text: str) -> tuple[list[str], str]:
    """Removes opening punctuation; returns the removed tokens and the rest."""
    head: list[str] = []
    while text and not _WHOLE_RE.fullmatch(text):
        match = _LEADING_RE.match(text)
        if match is None or match.end() == len(text):
            break
        head.extend(_punctuation_tokens(match.group(), closing=False))
        text = text[match.end():]
    return head, text


def _peel_trailing(text: str, following: str) -> tuple[str, list[str]]:
    """Removes closing punctuation; returns the rest and the removed tokens."""
    tail: list[str] = []
    while text and not _WHOLE_RE.fullmatch(text):
        if text.endswith("."):
            if _is_abbreviation(text[:-1], tail[-1] if tail else following):
                break
            tail.append(".")
            text = text[:-1]
            continue
        match = _TRAILING_RE.search(text)
        if match is None or match.start() == 0:
            break
        tail.extend(_punctuation_tokens(match.group(), closing=True))
        text = text[: match.start()]
    return text, tail[::-1]


def _punctuation_tokens(symbol: str, closing: bool) -> list[str]:
    """Maps a run of punctuation characters to the PTB token(s) it yields."""
    if symbol in _BRACKETS:
        return [_BRACKETS[symbol]]
    if symbol == '"':
        return ["''" if closing else "``"]
    if symbol == "'" and not closing:
        return ["`"]
    if symbol.startswith("--"):
        return ["--"]
    if symbol.startswith(".."):
        return ["..."] if len(symbol) > 2 else [".", "."]
    return [symbol]


def _is_abbreviation(stem: str, following: str) -> bool:
    """Tells whether the period after `stem` stays attached to it."""
    if _WHOLE_RE.fullmatch(stem):
        return False
    if following[:1] in (",", ";", ":"):
        return True  # "dog.," keeps its period, whatever the word.
    lower = stem.lower()
    if _INITIALS_RE.fullmatch(stem) or lower in _ALWAYS_ABBREVIATIONS:
        return True
    if lower in _NUMBER_ABBREVIATIONS:
        return following.lstrip()[:1].isdigit()
    if lower in _CAPITALIZED_ABBREVIATIONS:
        return stem[:1].isupper()
    return lower in _NOT_UPPER_ABBREVIATIONS and not stem.isupper()


def _split_word(word: str) -> list[str]:
    """Splits clitics ("n't", "'s", ...), "'n'" and fused words ("cannot")."""
    if not word:
        return []
    if word.lower() in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word.lower()])
    pos = word.lower().find("'n'")
    if pos >= 0 and not _WHOLE_RE.fullmatch(word):
        return _split_word(word[:pos]) + [word[pos:pos + 3]] + _split_word(word[pos + 3:])
    if word[:2].lower() == "y'" and word[2:3].isalpha() and not _WHOLE_RE.fullmatch(word[1:]):
        return [word[:2]] + _split_word(word[2:])
    if word.lower().endswith("'n") and len(word) > 2:
        return _split_word(word[:-2]) + [word[-2:]]
    clitics: list[str] = []
    match = _CLITIC_RE.fullmatch(word)
    while match is not None and not _WHOLE_RE.fullmatch(word):
        word, clitic = match.group(1), match.group(2)
        clitics.insert(0, clitic)
        match = _CLITIC_RE.fullmatch(word)
    return [word] + clitics


def check_same_ids(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> None:
    """Checks that references and hypotheses describe the same images.

    Args:
        references: Mapping from image id to its reference captions.
        hypotheses: Mapping from image id to its predicted caption.

    Raises:
        ValueError: If there are no images, an image has references but no
            prediction, a prediction has no references, or an image has an
            empty list of references.
        TypeError: If a prediction is not a string or the references of an
            image are a bare string.
    """
    if not references and not hypotheses:
        raise ValueError("no images to evaluate: references and predictions are empty")
    for key in hypotheses:
        if key not in references:
            raise ValueError(f"prediction for image id {key!r} has no references")
    for key in references:
        if key not in hypotheses:
            raise ValueError(
                f"image id {key!r} has references but no prediction; "
                "predictions and references must have the same image ids"
            )
    for key, refs in references.items():
        if isinstance(refs, str):
            raise TypeError(f"references of image id {key!r} must be a sequence of strings")
        if len(refs) == 0:
            raise ValueError(f"prediction for image id {key!r} has no references (empty list)")
        if not isinstance(hypotheses[key], str):
            raise TypeError(
                f"prediction for image id {key!r} must be a string, "
                f"got {type(hypotheses[key]).__name__}"
            )


def ngram_counts(words: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    """Counts the 1- to n-grams of a token sequence.

    The counts are inserted n-gram order first, then position, like the
    toolkit's ``precook``, so that floating-point sums over them add up in
    the toolkit's order.

    Args:
        words: The tokens.
        n: The largest n-gram order.

    Returns:
        A mapping from each n-gram (a tuple of tokens) to its count.
    """
    counts: dict[tuple[str, ...], int] = {}
    for order in range(1, n + 1):
        for start in range(len(words) - order + 1):
            gram = tuple(words[start:start + order])
            counts[gram] = counts.get(gram, 0) + 1
    return counts
