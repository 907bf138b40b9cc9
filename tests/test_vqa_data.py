"""VQA data: the shapes VQA generator, the VQA v2 readers and their errors, answer vocabulary and batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from captioning.data.shapes_vqa import ANNOTATIONS_FILE, QUESTIONS_FILE, generate_shapes_vqa
from captioning.data.vocab import AnswerVocab
from captioning.training.vqa_data import ShapesVQADataModule
from captioning.data.vqa_files import VQAFileError, read_annotations, read_questions, read_results, write_results
from captioning.metrics.vqa import question_accuracy
from conftest import TINY


@pytest.fixture(scope="module")
def shapes_vqa(tiny_shapes: Path, tmp_path_factory) -> Path:
    """The tiny shapes scenes (copied, so the shared fixture stays untouched) with VQA files."""
    root = tmp_path_factory.mktemp("shapes_vqa") / "shapes"
    shutil.copytree(tiny_shapes, root)
    return generate_shapes_vqa(root, questions_per_image=6, disagreement=0.5)


def test_shapes_vqa_files_follow_vqa_v2_formats(shapes_vqa: Path) -> None:
    for split in ("train", "val", "test"):
        questions = read_questions(shapes_vqa / QUESTIONS_FILE.format(split=split))
        annotations = read_annotations(shapes_vqa / ANNOTATIONS_FILE.format(split=split))
        assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
        for q, a in zip(questions, annotations):
            assert q["question_id"] // 1000 == q["image_id"] == a["image_id"]
            assert a["answer_type"] in {"yes/no", "number", "other"}
            assert [r["answer_id"] for r in a["answers"]] == list(range(1, 11))
            truth = a["multiple_choice_answer"]
            # At least seven annotators agree with the truth, so it scores 100 %.
            assert sum(r["answer"] == truth for r in a["answers"]) >= 7
            assert question_accuracy(truth, a["answers"]) == 1.0
    data = json.loads((shapes_vqa / QUESTIONS_FILE.format(split="train")).read_text())
    assert data["task_type"] == "Open-Ended" and data["data_subtype"] == "train"


def test_shapes_vqa_answers_agree_with_the_scenes(shapes_vqa: Path) -> None:
    instances = json.loads((shapes_vqa / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    scenes: dict[int, list[dict]] = {}
    for ann in instances["annotations"]:
        scenes.setdefault(ann["image_id"], []).append({"shape": names[ann["category_id"]], "colour": ann["color"]})
    questions = {q["question_id"]: q for q in read_questions(shapes_vqa / QUESTIONS_FILE.format(split="train"))}
    checked = 0
    for a in read_annotations(shapes_vqa / ANNOTATIONS_FILE.format(split="train")):
        text, objs, truth = questions[a["question_id"]]["question"], scenes[a["image_id"]], a["multiple_choice_answer"]
        if text == "how many shapes are there?":
            assert truth == str(len(objs))
        elif text.startswith("what color is the ") and "most" not in text:
            shape = text.removeprefix("what color is the ").rstrip("?")
            assert [o["colour"] for o in objs if o["shape"] == shape] == [truth]
        elif text.startswith("is there a"):
            colour, shape = text.rstrip("?").split()[-2:]
            assert truth == ("yes" if {"shape": shape, "colour": colour} in objs else "no")
        else:
            continue
        checked += 1
    assert checked > 10


def test_shapes_vqa_is_deterministic_and_cached(shapes_vqa: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shapes"
    shutil.copytree(shapes_vqa, copy)
    shutil.rmtree(copy / "vqa")
    generate_shapes_vqa(copy, questions_per_image=6, disagreement=0.5)
    for split in ("train", "test"):
        name = ANNOTATIONS_FILE.format(split=split)
        assert (copy / name).read_bytes() == (shapes_vqa / name).read_bytes()
    before = (copy / QUESTIONS_FILE.format(split="val")).stat().st_mtime_ns
    generate_shapes_vqa(copy, questions_per_image=6, disagreement=0.5)  # same parameters: reused
    assert (copy / QUESTIONS_FILE.format(split="val")).stat().st_mtime_ns == before
    with pytest.raises(FileNotFoundError, match="no shapes dataset"):
        generate_shapes_vqa(tmp_path / "absent")


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_readers_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(VQAFileError, match=r"broken\.json: not valid JSON"):
        read_questions(_write(tmp_path / "broken.json", "{"))
    with pytest.raises(FileNotFoundError, match="VQA annotations file not found"):
        read_annotations(tmp_path / "absent.json")
    bad = {"annotations": [{"question_id": 1, "image_id": 1, "answer_type": "other", "question_type": "what",
                            "answers": [{"answer": 3}]}]}
    with pytest.raises(VQAFileError, match=r"annotations\[0\]\.answers\[0\] field 'answer' must be str"):
        read_annotations(_write(tmp_path / "a.json", bad))
    with pytest.raises(VQAFileError, match=r"questions\[1\] has no field 'question'"):
        read_questions(_write(tmp_path / "q.json", {"questions": [
            {"question_id": 1, "image_id": 1, "question": "x"}, {"question_id": 2, "image_id": 1}]}))


@pytest.mark.parametrize("results, message", [
    ({"question_id": 1}, "must be a JSON array"),
    ([{"question_id": 1, "answer": "a"}], r"no answer for 1 question id\(s\), e.g. \[2\]"),
    ([{"question_id": 1, "answer": "a"}, {"question_id": 2, "answer": "b"}, {"question_id": 7, "answer": "c"}],
     r"1 question id\(s\) not in the annotations, e.g. \[7\]"),
    ([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], r"results\[1\] answers question_id 1 a second"),
    ([{"question_id": 1, "answer": 5}, {"question_id": 2, "answer": "b"}], r"results\[0\] field 'answer' must be str"),
    ([{"question_id": "1", "answer": "a"}], r"results\[0\] field 'question_id' must be int"),
])
def test_bad_results_files_get_clear_errors(tmp_path: Path, results, message: str) -> None:
    with pytest.raises(VQAFileError, match=message):
        read_results(_write(tmp_path / "r.json", results), [1, 2])


def test_write_results_in_question_order_and_refuses_partial_submissions(tmp_path: Path) -> None:
    questions = [{"question_id": 5}, {"question_id": 2}]
    path = write_results(tmp_path / "vqa_OpenEnded_mscoco_test-dev2015_x_results.json", {2: "no", 5: "yes"},
                         questions)
    assert json.loads(path.read_text()) == [{"question_id": 5, "answer": "yes"}, {"question_id": 2, "answer": "no"}]
    with pytest.raises(ValueError, match="1 unanswered"):
        write_results(tmp_path / "partial.json", {5: "yes"}, questions)
    assert not (tmp_path / "partial.json").exists()


def test_answer_vocab_normalizes_and_scores_like_the_metric() -> None:
    anns = [{"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["Two"] * 3 + ["2"] * 7)]},
            {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["red"] * 6 + ["blue."] * 4)]}]
    vocab = AnswerVocab.build(anns)
    assert vocab.itos == ["2", "red", "blue"]  # "Two"/"2" are one class, "blue." is "blue"; most frequent first
    # Targets are the official accuracy: "2" matches all ten after normalization.
    assert vocab.targets(anns[0]["answers"]) == {0: 1.0}
    assert vocab.targets(anns[1]["answers"]) == {1: 1.0, 2: pytest.approx(1.0)}  # 4 "blue": 4 x 1 + 6 x 1
    assert AnswerVocab.build(anns, min_count=5).itos == ["2", "red"]
    assert AnswerVocab.build(anns, top_k=1).itos == ["2"]
    assert AnswerVocab.from_dict(vocab.to_dict()).itos == vocab.itos


def test_datamodule_batches_all_questions_of_each_image(shapes_vqa: Path) -> None:
    dm = ShapesVQADataModule(root=str(shapes_vqa), **{k: TINY[k] for k in ("num_train", "num_val", "num_test")},
                             image_size=TINY["image_size"], questions_per_image=6, disagreement=0.5, batch_size=3)
    batch = next(iter(dm.train_dataloader()))
    q = batch["tokens"].size(0)
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["owner"].tolist() == sorted(batch["owner"].tolist()) and q == len(batch["question_id"])
    assert batch["targets"].shape == (q, len(dm.answer_vocab))
    assert (batch["targets"].max(dim=1).values == 1.0).all()  # the true answer is always a class, scoring 1
    assert (batch["lengths"] == (batch["tokens"] != 0).sum(dim=1)).all()
