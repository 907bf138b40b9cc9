"""The built-in VQA set on the shapes scenes, written in the official VQA v2 formats.

Questions are derived from a shapes dataset's instance annotations (``instances_<split>.json``: category,
``color``, ``size``, ``bbox`` of every object), never from its pixels, so they are exact. Kinds of question:

============  ===========================================  ===============  ==============
kind          example                                      answer type      question type
============  ===========================================  ===============  ==============
colour        what color is the circle?                    other            what color is the
shape         what shape is the red object?                other            what shape is the
count         how many squares are there?                  number           how many
existence     is there a red triangle?                     yes/no           is there a
relation      is the red circle left of the blue square?   yes/no           is the
position      what color is the leftmost shape?            other            what color is the
============  ===========================================  ===============  ==============

Every question has ten answers. Most questions are answered unanimously; on a ``disagreement`` share of
them, one to three annotators give a variant: a spelled-out number ("two" for "2"), a synonym ("box",
"violet"), different case or punctuation ("Yes", "red.") or a wrong answer (a count off by one, the other
of yes/no). At least seven always give the true answer, so it scores 100 % under the official metric.

Files written under ``shapes_root/vqa/`` (``{split}`` is train, val or test)::

    v2_OpenEnded_shapes_{split}_questions.json    {"info", "task_type", "data_type", "data_subtype",
                                                   "license", "questions": [{"image_id", "question",
                                                   "question_id"}]}
    v2_shapes_{split}_annotations.json            {"info", "license", "data_type", "data_subtype",
                                                   "annotations": [{"question_id", "image_id",
                                                   "question_type", "answer_type", "multiple_choice_answer",
                                                   "answers": [{"answer", "answer_confidence", "answer_id"}]}]}
    vqa_meta.json                                 parameters (the cache key)

Question ids are ``image_id * 1000 + k`` as in VQA v2.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from captioning.data.shapes import COLOURS, SHAPES, SPLITS
from captioning.core.io import write_json_atomic

FORMAT_VERSION = 1
QUESTIONS_FILE = "vqa/v2_OpenEnded_shapes_{split}_questions.json"
ANNOTATIONS_FILE = "vqa/v2_shapes_{split}_annotations.json"
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
_NUMBER_WORD = ("zero", "one", "two", "three", "four")
_SYNONYM = {"circle": "disk", "square": "box", "purple": "violet", "white": "light gray", "triangle": "triangle"}
_LICENSE = {"name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}

Obj = dict  # {"shape", "colour", "x", "y"}
Question = tuple[str, str, str, str]  # (question, answer, answer type, question type)


def generate_shapes_vqa(shapes_root: str | Path, *, questions_per_image: int = 6, disagreement: float = 0.3,
                        seed: int = 0) -> Path:
    """Writes the VQA files for an existing shapes dataset (or reuses matching ones); returns ``shapes_root``.

    Args:
        shapes_root: A dataset made by :func:`captioning.data.shapes.generate_shapes`.
        questions_per_image: Questions per scene (distinct questions, fewer if the scene allows fewer).
        disagreement: Share of questions on which some annotators give a variant or wrong answer.
        seed: Seed of the question sampling; each split draws from ``(seed, split)``.

    Raises:
        FileNotFoundError: If the shapes dataset is missing.
        ValueError: If a parameter is out of range or an instance annotation lacks a field.
    """
    root = Path(shapes_root)
    if not 1 <= questions_per_image <= 20 or not 0.0 <= disagreement <= 1.0:
        raise ValueError("need 1 <= questions_per_image <= 20 and 0 <= disagreement <= 1")
    shapes_meta = root / "shapes_meta.json"
    if not shapes_meta.is_file():
        raise FileNotFoundError(f"no shapes dataset at {root} (missing {shapes_meta})")
    meta = {"format_version": FORMAT_VERSION, "questions_per_image": questions_per_image,
            "disagreement": disagreement, "seed": seed, "shapes": json.loads(shapes_meta.read_text())}
    meta_path = root / "vqa" / "vqa_meta.json"
    try:
        if json.loads(meta_path.read_text()) == meta:
            return root
    except (OSError, ValueError):
        pass
    meta_path.unlink(missing_ok=True)  # the meta file is written last: present means complete
    for split in SPLITS:
        _write_split(root, split, questions_per_image, disagreement, seed)
    write_json_atomic(meta_path, meta)
    return root


def _read_scenes(path: Path) -> tuple[list[dict], dict[int, list[Obj]]]:
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    scenes: dict[int, list[Obj]] = {img["id"]: [] for img in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        try:
            x, y, w, h = ann["bbox"]
            obj = {"shape": names[ann["category_id"]], "colour": ann["color"], "x": x + w / 2, "y": y + h / 2}
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: annotations[{i}] lacks a usable field ({err!r})") from err
        scenes[ann["image_id"]].append(obj)
    return data["images"], {k: sorted(v, key=lambda o: o["x"]) for k, v in scenes.items()}


def _write_split(root: Path, split: str, per_image: int, disagreement: float, seed: int) -> None:
    images, scenes = _read_scenes(root / "annotations" / f"instances_{split}.json")
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(f"vqa-{split}".encode())]))
    questions, annotations = [], []
    for img in images:
        for k, (text, answer, a_type, q_type) in enumerate(_scene_questions(rng, scenes[img["id"]], per_image)):
            qid = img["id"] * 1000 + k
            questions.append({"image_id": img["id"], "question": text, "question_id": qid})
            answers = _annotator_answers(rng, answer, a_type, disagreement)
            annotations.append({"question_id": qid, "image_id": img["id"], "question_type": q_type,
                                "answer_type": a_type, "multiple_choice_answer": answer, "answers": answers})
    info = {"description": f"shapes VQA ({split} split)", "version": "1.0", "year": 2024,
            "contributor": "captioning", "url": "", "date_created": "2024-01-01"}
    head = {"info": info, "license": _LICENSE, "data_type": "shapes", "data_subtype": split}
    write_json_atomic(root / QUESTIONS_FILE.format(split=split),
                      {**head, "task_type": "Open-Ended", "questions": questions})
    write_json_atomic(root / ANNOTATIONS_FILE.format(split=split), {**head, "annotations": annotations})


# ----------------------------------------------------------------------------- questions


def _desc(o: Obj) -> str:
    return f"{o['colour']} {o['shape']}"


def _unique(objs: list[Obj], key: Callable[[Obj], str]) -> list[Obj]:
    return [o for o in objs if sum(key(p) == key(o) for p in objs) == 1]


def _candidates(rng: np.random.Generator, objs: list[Obj]) -> dict[str, list[Question]]:
    """All questions of each kind that the scene answers unambiguously."""
    c: dict[str, list[Question]] = {k: [] for k in ("colour", "shape", "count", "existence", "relation",
                                                    "position")}
    for o in _unique(objs, lambda o: o["shape"]):
        c["colour"].append((f"what color is the {o['shape']}?", o["colour"], "other", "what color is the"))
    for o in _unique(objs, lambda o: o["colour"]):
        c["shape"].append((f"what shape is the {o['colour']} object?", o["shape"], "other", "what shape is the"))
    for s in SHAPES:
        n = str(sum(o["shape"] == s for o in objs))
        c["count"].append((f"how many {_PLURAL[s]} are there?", n, "number", "how many"))
    c["count"].append(("how many shapes are there?", str(len(objs)), "number", "how many"))
    present = {(o["colour"], o["shape"]) for o in objs}
    absent = [(col, s) for col in COLOURS for s in SHAPES if (col, s) not in present]
    pos = sorted(present)[int(rng.integers(len(present)))]
    neg = absent[int(rng.integers(len(absent)))]
    for (col, s), ans in ((pos, "yes"), (neg, "no")):
        article = "an" if col[0] in "aeiou" else "a"
        c["existence"].append((f"is there {article} {col} {s}?", ans, "yes/no", "is there a"))
    named = _unique(objs, _desc)
    for i, a in enumerate(named):
        for b in named[i + 1:]:
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            side = "left" if rng.random() < 0.5 else "right"
            truth = (first["x"] < second["x"]) == (side == "left")
            c["relation"].append((f"is the {_desc(first)} to the {side} of the {_desc(second)}?",
                                  "yes" if truth else "no", "yes/no", "is the"))
    if len(objs) > 1:
        c["position"].append(("what color is the leftmost shape?", objs[0]["colour"], "other",
                              "what color is the"))
        c["position"].append(("what color is the rightmost shape?", objs[-1]["colour"], "other",
                              "what color is the"))
    return c


def _scene_questions(rng: np.random.Generator, objs: list[Obj], per_image: int) -> list[Question]:
    """Up to ``per_image`` distinct questions, spreading them over the kinds in turn."""
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in _candidates(rng, objs).items() if v}
    order = [list(pools)[i] for i in rng.permutation(len(pools))]
    chosen: list[Question] = []
    while len(chosen) < per_image and any(pools.values()):
        for kind in order:
            if pools[kind] and len(chosen) < per_image:
                chosen.append(pools[kind].pop())
    return chosen


# ----------------------------------------------------------------------------- annotators


def _variant(rng: np.random.Generator, answer: str, answer_type: str) -> str:
    """A differently written or wrong answer, as a careless annotator might give."""
    r = rng.random()
    if answer_type == "number":
        if r < 0.5:
            return _NUMBER_WORD[int(answer)] if int(answer) < len(_NUMBER_WORD) else answer
        return str(max(0, int(answer) + (1 if rng.random() < 0.5 else -1)))
    if answer_type == "yes/no":
        return {0: answer.capitalize(), 1: answer + "."}.get(int(r * 3), "no" if answer == "yes" else "yes")
    if r < 0.5 and answer in _SYNONYM:
        return _SYNONYM[answer]
    return answer + "." if r < 0.75 else answer.capitalize()


def _annotator_answers(rng: np.random.Generator, answer: str, answer_type: str,
                       disagreement: float) -> list[dict]:
    """Ten answer records; on a ``disagreement`` share of questions 1–3 of them are variants."""
    answers = [answer] * 10
    if rng.random() < disagreement:
        for i in rng.choice(10, size=int(rng.integers(1, 4)), replace=False):
            answers[i] = _variant(rng, answer, answer_type)
    return [{"answer": a, "answer_confidence": "yes" if a == answer else "maybe", "answer_id": i + 1}
            for i, a in enumerate(answers)]
