"""The official VQA accuracy (GT-Vision-Lab/VQA ``vqaEval.py``, 2021 "Fixed processing answers bug"), in pure Python.

Written from the behaviour of the official tool, not from its code. Per question:

1. Every ground-truth answer and the predicted answer get newlines/tabs replaced by spaces and are stripped.
2. Only if the (stripped) ground-truth answers are **not all identical**, the ground-truth answers *and* the
   predicted answer are normalized: :func:`process_punctuation`, then :func:`process_digit_article`. When all
   ten annotators typed the same string, the prediction must equal that string exactly (``"Yes"`` scores 0
   against ten ``"yes"``).
3. For each ground-truth record, the records that differ from it (as whole records: answer, ``answer_id``,
   ``answer_confidence``; in VQA v2 that is the other nine) are compared with the prediction; that subset scores
   ``min(1, matches / 3)``. The question scores the mean over the records.

Aggregates are ``round(100 * sum(scores) / count, 2)`` overall, per answer type and per question type; each
question is reported as ``round(100 * score, 2)``. The official tool runs on Python 2, whose ``round`` breaks
exact ties away from zero (Python 3 rounds them to even); :func:`round_half_away` reproduces Python 2, so an
overall of exactly 0.125 % is reported as 0.13 as the official tool does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

# The official contraction table (120 entries), sorted; entries that can never match after lower-casing
# ("Im", "Ive", ...) and the odd "somebody'd" -> "somebodyd" are kept, since the official tool has them.
CONTRACTIONS: dict[str, str] = {
    "'ow'sat": "'ow's'at", "'ows'at": "'ow's'at", "I'dve": "I'd've", "Id've": "I'd've", "Im": "I'm",
    "Ive": "I've", "aint": "ain't", "arent": "aren't", "cant": "can't", "couldn'tve": "couldn't've",
    "couldnt": "couldn't", "couldnt've": "couldn't've", "couldve": "could've", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadn'tve": "hadn't've", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "he'dve": "he'd've", "hed": "he'd",
    "hed've": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "isnt": "isn't",
    "it'dve": "it'd've", "itd": "it'd", "itd've": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightn'tve": "mightn't've", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "shant": "shan't",
    "she'dve": "she'd've", "she's": "she's", "shed've": "she'd've", "shouldn'tve": "shouldn't've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldve": "should've",
    "somebody'd": "somebodyd", "somebody'dve": "somebody'd've", "somebodyd've": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someone'dve": "someone'd've",
    "someoned": "someone'd", "someoned've": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "something'dve": "something'd've", "somethingd": "something'd",
    "somethingd've": "something'd've", "somethingll": "something'll", "thats": "that's",
    "there'dve": "there'd've", "thered": "there'd", "thered've": "there'd've", "therere": "there're",
    "theres": "there's", "they'dve": "they'd've", "theyd": "they'd", "theyd've": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "we'dve": "we'd've", "wed've": "we'd've", "werent": "weren't", "weve": "we've", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "who'dve": "who'd've", "whod": "who'd",
    "whod've": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldn'tve": "wouldn't've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldve": "would've", "y'all'dve": "y'all'd've", "y'alld've": "y'all'd've",
    "y'allll": "y'all'll", "yall": "y'all", "yall'd've": "y'all'd've", "yall'll": "y'all'll",
    "you'dve": "you'd've", "youd": "you'd", "youd've": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
# Number words and "none" become digits ("none" -> "0"), word by word, before articles are dropped.
NUMBER_WORDS: dict[str, str] = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
# Characters that are removed, or replaced by a space (see process_punctuation). "'" ":" "." are not among them.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
# The official tool compiles its patterns without re.UNICODE on Python 2, so \d means ASCII digits only.
_DIGIT_COMMA_DIGIT = re.compile(r"[0-9],[0-9]")
_PERIOD = re.compile(r"\.(?![0-9])")  # a period not followed by a digit
# The official tool passes re.UNICODE (= 32) where re.sub takes its count: at most 32 periods are removed.
_PERIOD_COUNT = 32


def clean_whitespace(text: str) -> str:
    """Newlines and tabs become spaces; leading and trailing whitespace is stripped."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official punctuation rule.

    Each character of :data:`PUNCTUATION` is deleted if, in the *input* text, it is followed or preceded by a
    space, or the input contains digit-comma-digit anywhere; otherwise it becomes a space. Then periods not
    followed by a digit are deleted (at most 32 of them).
    """
    out = text
    drop_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        out = out.replace(p, "" if drop_all or p + " " in text or " " + p in text else " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official word rule: lower-case, split on whitespace, number words to digits, drop articles,
    expand the contraction table, join with single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
    """Whitespace cleaning, punctuation and digit/article processing: the form both sides take whenever
    the ground-truth answers of a question disagree."""
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def _records(gt_answers: Sequence[str | Mapping]) -> list[dict]:
    """Ground-truth answers as records; a bare string at position i is ``{"answer": s, "answer_id": i + 1}``."""
    return [dict(a) if isinstance(a, Mapping) else {"answer": a, "answer_id": i + 1}
            for i, a in enumerate(gt_answers)]


def question_accuracy(answer: str, gt_answers: Sequence[str | Mapping]) -> float:
    """Official accuracy (0..1) of one predicted answer against a question's ground-truth answers.

    Args:
        answer: The predicted answer, raw.
        gt_answers: The annotators' answers: VQA v2 records (``{"answer", "answer_id", ...}``) or strings.

    Returns:
        The mean over ground-truth records of ``min(1, matches among the other records / 3)``.
    """
    if not gt_answers:
        raise ValueError("a question needs at least one ground-truth answer")
    records = _records(gt_answers)
    for r in records:
        r["answer"] = clean_whitespace(r["answer"])
    answer = clean_whitespace(answer)
    if len({r["answer"] for r in records}) > 1:
        for r in records:
            r["answer"] = process_digit_article(process_punctuation(r["answer"]))
        answer = process_digit_article(process_punctuation(answer))
    scores = []
    for r in records:
        matches = sum(1 for other in records if other != r and other["answer"] == answer)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def round_half_away(value: float, ndigits: int = 2) -> float:
    """Python 2's ``round``: the exact binary value rounded to ``ndigits`` decimals, ties away from zero."""
    quantum = Decimal(1).scaleb(-ndigits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def _percent(scores: list[float], ndigits: int) -> float:
    return round_half_away(100 * sum(scores) / len(scores), ndigits)


def vqa_accuracy(annotations: Sequence[Mapping], answers: Mapping[int, str], ndigits: int = 2) -> dict:
    """Official overall, per-answer-type and per-question-type accuracy, in percent.

    Args:
        annotations: VQA v2 annotation records (``question_id``, ``answers``, ``answer_type``,
            ``question_type``); questions are scored, and sums taken, in this order.
        answers: Predicted answer of every annotated question, by question id.
        ndigits: Decimals kept (the official default is 2).

    Returns:
        ``overall``, ``perAnswerType``, ``perQuestionType`` and ``per_question`` (question id → percent).
    """
    if not annotations:
        raise ValueError("no annotated questions to evaluate")
    missing = [a["question_id"] for a in annotations if a["question_id"] not in answers]
    if missing:
        raise KeyError(f"no predicted answer for {len(missing)} question id(s), e.g. {missing[:5]}")
    scores: list[float] = []
    by_answer_type: dict[str, list[float]] = {}
    by_question_type: dict[str, list[float]] = {}
    per_question: dict[int, float] = {}
    for ann in annotations:
        acc = question_accuracy(answers[ann["question_id"]], ann["answers"])
        scores.append(acc)
        by_answer_type.setdefault(ann["answer_type"], []).append(acc)
        by_question_type.setdefault(ann["question_type"], []).append(acc)
        per_question[ann["question_id"]] = round_half_away(100 * acc, ndigits)
    return {"overall": _percent(scores, ndigits),
            "perAnswerType": {k: _percent(v, ndigits) for k, v in by_answer_type.items()},
            "perQuestionType": {k: _percent(v, ndigits) for k, v in by_question_type.items()},
            "per_question": per_question}
