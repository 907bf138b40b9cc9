"""Readers of the VQA v2 files (questions, annotations, results) that name the file, entry and field of every
problem, and the writer of results / test-dev and test-std submission files.

Only the fields this codebase uses are checked; other fields are kept as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from captioning.core.io import write_json_atomic
from captioning.data.formats import FormatError, load_json, require_field


class VQAFileError(FormatError):
    """A VQA file is missing, is not valid JSON, or has a missing or wrongly typed field."""


def _no_duplicates(ids: Iterable[int], what: str, path: Path) -> None:
    seen: set[int] = set()
    for i in ids:
        if i in seen:
            raise VQAFileError(f"{path}: question_id {i} appears more than once in {what}")
        seen.add(i)


def read_questions(path: str | Path) -> list[dict]:
    """The ``questions`` of a VQA v2 questions file, each with int ``question_id``/``image_id`` and a string
    ``question``, in file order."""
    path = Path(path)
    data = load_json(path, "VQA questions", VQAFileError)
    questions = require_field(data, "questions", list, "the file", path, VQAFileError)
    for i, q in enumerate(questions):
        require_field(q, "question_id", int, f"questions[{i}]", path, VQAFileError)
        require_field(q, "image_id", int, f"questions[{i}]", path, VQAFileError)
        require_field(q, "question", str, f"questions[{i}]", path, VQAFileError)
    _no_duplicates((q["question_id"] for q in questions), "'questions'", path)
    return questions


def read_annotations(path: str | Path) -> list[dict]:
    """The ``annotations`` of a VQA v2 annotations file, with every field the metric uses checked, in file
    order (the order in which the official tool scores and sums)."""
    path = Path(path)
    data = load_json(path, "VQA annotations", VQAFileError)
    annotations = require_field(data, "annotations", list, "the file", path, VQAFileError)
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        for name in ("question_id", "image_id"):
            require_field(ann, name, int, where, path, VQAFileError)
        for name in ("answer_type", "question_type"):
            require_field(ann, name, str, where, path, VQAFileError)
        answers = require_field(ann, "answers", list, where, path, VQAFileError)
        if not answers:
            raise VQAFileError(f"{path}: {where} field 'answers' is empty")
        for j, a in enumerate(answers):
            require_field(a, "answer", str, f"{where}.answers[{j}]", path, VQAFileError)
    _no_duplicates((a["question_id"] for a in annotations), "'annotations'", path)
    return annotations


def check_questions_match(questions: list[dict], annotations: list[dict], questions_path: str | Path,
                          annotations_path: str | Path) -> None:
    """Raises :class:`VQAFileError` if an annotation's question is not in the questions file, or its image
    differs there."""
    images = {q["question_id"]: q["image_id"] for q in questions}
    for i, ann in enumerate(annotations):
        qid = ann["question_id"]
        if qid not in images:
            raise VQAFileError(f"{annotations_path}: annotations[{i}] question_id {qid} is not in {questions_path}")
        if images[qid] != ann["image_id"]:
            raise VQAFileError(f"{annotations_path}: annotations[{i}] question_id {qid} has image_id "
                               f"{ann['image_id']}, but {questions_path} gives {images[qid]}")


def read_results(path: str | Path, question_ids: Iterable[int]) -> dict[int, str]:
    """A results file ``[{"question_id", "answer"}]`` as question id → answer.

    Like the official tool, the results must answer exactly the given questions; unlike it, a question
    answered twice is an error (the official tool silently keeps the last answer).

    Raises:
        VQAFileError: naming the entry for a bad entry, a duplicate, a missing or an unknown question id.
    """
    path = Path(path)
    data = load_json(path, "VQA results", VQAFileError)
    if not isinstance(data, list):
        raise VQAFileError(f"{path}: results must be a JSON array of {{\"question_id\", \"answer\"}} objects, "
                           f"got {type(data).__name__}")
    answers: dict[int, str] = {}
    for i, r in enumerate(data):
        qid = require_field(r, "question_id", int, f"results[{i}]", path, VQAFileError)
        answer = require_field(r, "answer", str, f"results[{i}]", path, VQAFileError)
        if qid in answers:
            raise VQAFileError(f"{path}: results[{i}] answers question_id {qid} a second time")
        answers[qid] = answer
    expected = list(question_ids)
    known = set(expected)
    unknown = [q for q in answers if q not in known]
    if unknown:
        raise VQAFileError(f"{path}: {len(unknown)} question id(s) not in the annotations, e.g. {unknown[:5]}")
    missing = [q for q in expected if q not in answers]
    if missing:
        raise VQAFileError(f"{path}: no answer for {len(missing)} question id(s), e.g. {missing[:5]}")
    return answers


def write_results(path: str | Path, answers: Mapping[int, str], questions: list[dict] | None = None) -> Path:
    """Writes ``[{"question_id", "answer"}]`` atomically, in the order of ``questions`` if given.

    This is the format of the official results and of test-dev/test-std submissions (file name
    ``vqa_OpenEnded_mscoco_test-dev2015_<method>_results.json``); with ``questions`` (e.g. the test2015 or
    test-dev2015 questions file) every question must be answered and no other, so a partial or stray
    submission is refused here rather than by the evaluation server.

    Raises:
        ValueError: If an answer is not a string, or ``questions`` and ``answers`` do not cover each other.
    """
    for qid, answer in answers.items():
        if not isinstance(answer, str):
            raise ValueError(f"answer of question_id {qid} must be a string, got {type(answer).__name__}")
    if questions is None:
        order = sorted(answers)
    else:
        order = [q["question_id"] for q in questions]
        missing = [q for q in order if q not in answers]
        extra = sorted(set(answers) - set(order))
        if missing or extra:
            raise ValueError(f"{path}: answers do not match the questions: {len(missing)} unanswered "
                             f"(e.g. {missing[:5]}), {len(extra)} not in the questions (e.g. {extra[:5]})")
    return write_json_atomic(path, [{"question_id": q, "answer": answers[q]} for q in order])
