"""The official VQA accuracy on hand-made cases.

Every expected value is worked out by hand from the behaviour of GT-Vision-Lab/VQA ``vqaEval.py`` (current
version, 2021 "Fixed processing answers bug"); the comments give the derivation.
"""

from __future__ import annotations

import pytest

from captioning.metrics.vqa import (normalize_answer, process_digit_article, process_punctuation,
                                    question_accuracy, round_half_away, vqa_accuracy)


@pytest.mark.parametrize("raw, expected", [
    ("Two dogs.", "2 dogs"),        # "." not before a digit is deleted; "two" -> "2"
    ("none", "0"),                  # the official map sends "none" to "0"
    ("The cat", "cat"),             # lower-cased, article dropped
    ("a an the", ""),               # only articles: nothing left
    ("dont", "don't"),              # contraction table
    ("Im", "im"),                   # the table's "Im" can never match: words are lower-cased first
    ("somebody'd", "somebodyd"),    # the table's odd entry, kept
    ("1,000", "1000"),              # digit-comma-digit anywhere: every listed punctuation mark is deleted
    ("red,blue", "red blue"),       # a comma with no space beside it becomes a space
    ("red, blue", "red blue"),      # ", " occurs: the comma is deleted
    ("x-y", "x y"),                 # "-" becomes a space
    ("x - y", "x y"),               # " -" occurs: "-" deleted, the double space collapses on split
    ("10.5", "10.5"),               # a period before a digit stays
    ("5.", "5"),
    ("yes?", "yes"),                # "?" -> space, trailing space gone after split/join
    ("it's", "it's"),               # apostrophes and colons are not processed
    ("12:30", "12:30"),
    ("\tyes\n", "yes"),             # newline/tab -> space, stripped
    ("3 , 4", "3 4"),               # digit-comma-digit needs adjacency; " ," occurs anyway: deleted
    ("a.\u0663", "a\u0663"),        # \d is ASCII-only (Python 2 pattern without re.UNICODE): "." deleted
])
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_punctuation_rule_reads_the_input_not_the_partly_processed_text() -> None:
    # "(a) b": ") " occurs in the input, so ")" is deleted; "(" has no space beside it -> a space.
    assert process_punctuation("(a) b") == " a b"
    # "a/ b": "/ " occurs -> deleted.  "c/d": no space beside "/" -> space.
    assert process_punctuation("a/ b") == "a b"
    assert process_punctuation("c/d") == "c d"


def test_at_most_32_periods_are_removed() -> None:
    # The official tool passes re.UNICODE (32) as re.sub's count: 40 periods -> 8 remain.
    assert process_punctuation("." * 40 + "a") == "." * 8 + "a"


def test_digit_article_order_numbers_before_articles() -> None:
    assert process_digit_article("The ONE") == "1"
    assert process_digit_article("ten a") == "10"


def _records(*answers: str) -> list[dict]:
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


def test_unanimous_answers_are_compared_without_normalization() -> None:
    gt = _records(*["yes"] * 10)
    # Each leave-one-out subset holds 9 matches: min(1, 9/3) = 1, mean 1.
    assert question_accuracy("yes", gt) == 1.0
    assert question_accuracy(" yes\n", gt) == 1.0  # whitespace cleaning always applies
    # All ten identical: neither side is normalized, so case and punctuation count.
    assert question_accuracy("Yes", gt) == 0.0
    assert question_accuracy("yes.", gt) == 0.0
    # Unanimous "Two": "2" does not match the raw string.
    assert question_accuracy("2", _records(*["Two"] * 10)) == 0.0


def test_disagreeing_answers_are_normalized_on_both_sides() -> None:
    # 3 x "two", 7 x "3" -> normalized to 3 x "2", 7 x "3". Predicting "2":
    # a "2" record leaves 2 matches -> 2/3 (x3); a "3" record leaves 3 matches -> 1 (x7); (2 + 7) / 10.
    assert question_accuracy("2", _records(*["two"] * 3, *["3"] * 7)) == pytest.approx(0.9)
    # With one "Yes." among nine "yes", both sides normalize: "YES!" -> "yes", 10 matches -> 1.
    assert question_accuracy("YES!", _records("Yes.", *["yes"] * 9)) == 1.0


@pytest.mark.parametrize("matches, expected", [
    (0, 0.0),
    (1, 0.3),  # the matching record: 0 others -> 0; 9 others each see 1 -> 1/3; 9/3 / 10
    (2, 0.6),  # 2 x (1/3) + 8 x (2/3) = 6; / 10
    (3, 0.9),  # 3 x (2/3) + 7 x 1 = 9; / 10
    (4, 1.0),  # 4 x 1 + 6 x 1
])
def test_leave_one_out_mean_by_number_of_matching_annotators(matches: int, expected: float) -> None:
    gt = _records(*["cat"] * matches, *["dog"] * (10 - matches))
    assert question_accuracy("cat", gt) == pytest.approx(expected)


def test_leave_one_out_removes_whole_equal_records() -> None:
    # The official tool drops every record equal (as a whole) to the held-out one. With distinct answer_ids
    # that is one record; with a repeated id, all equal copies go: 5 x "cat" + 5 x "dog", all answer_id 1:
    # a "cat" record sees 0 other "cat" -> 0 (x5); a "dog" record sees 5 "cat" -> 1 (x5); mean 0.5.
    same_id = [{"answer": a, "answer_id": 1} for a in ["cat"] * 5 + ["dog"] * 5]
    assert question_accuracy("cat", same_id) == 0.5
    assert question_accuracy("cat", _records(*["cat"] * 5, *["dog"] * 5)) == 1.0
    # Bare strings are records with distinct ids.
    assert question_accuracy("cat", ["cat"] * 5 + ["dog"] * 5) == 1.0


def test_python2_rounding_ties_away_from_zero() -> None:
    assert round_half_away(0.125, 2) == 0.13  # exactly representable tie: Python 3's round gives 0.12
    assert round_half_away(2.675, 2) == 2.67  # 2.675 is stored as 2.67499999...: no tie
    assert round_half_away(33.333333, 2) == 33.33


def _ann(qid: int, answers: list[str], answer_type: str = "other", question_type: str = "what") -> dict:
    return {"question_id": qid, "image_id": 1, "answers": _records(*answers), "answer_type": answer_type,
            "question_type": question_type}


def test_aggregates_in_percent_per_answer_and_question_type() -> None:
    anns = [_ann(1, ["yes"] * 10, "yes/no", "is the"), _ann(2, ["2"] * 2 + ["3"] * 8, "number", "how many"),
            _ann(3, ["red"] + ["blue"] * 9, "other", "what color is the")]
    acc = vqa_accuracy(anns, {1: "yes", 2: "2", 3: "red"})
    # Scores 1, 0.6, 0.3: overall 100 * 1.9 / 3 = 63.333... -> 63.33.
    assert acc["overall"] == 63.33
    assert acc["perAnswerType"] == {"yes/no": 100.0, "number": 60.0, "other": 30.0}
    assert acc["perQuestionType"] == {"is the": 100.0, "how many": 60.0, "what color is the": 30.0}
    assert acc["per_question"] == {1: 100.0, 2: 60.0, 3: 30.0}


def test_overall_rounds_like_the_official_python2_tool() -> None:
    # One right answer among 800 questions: 100 * 1 / 800 = 0.125 exactly -> 0.13 (Python 2 round).
    anns = [_ann(i, ["yes"] * 10) for i in range(800)]
    acc = vqa_accuracy(anns, {i: "yes" if i == 0 else "no" for i in range(800)})
    assert acc["overall"] == 0.13


def test_missing_answer_is_an_error() -> None:
    with pytest.raises(KeyError, match="no predicted answer for 1 question"):
        vqa_accuracy([_ann(1, ["a"] * 10), _ann(2, ["b"] * 10)], {1: "a"})
