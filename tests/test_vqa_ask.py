"""`captioning vqa ask`: top answers with sigmoid scores, one question or a JSON-lines file of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from captioning.cli.main import main as captioning_main
from captioning.cli.vqa import ask_main
from captioning.data.vocab import AnswerVocab, Vocabulary
from captioning.inference.checkpoint import load_vqa, save_vqa
from captioning.inference.vqa import AskItem, answer_batch, ask, encode_question
from captioning.models import SmallCNN
from captioning.models.vqa import GroundedFusion, QuestionEncoder, build_vqa_model

WORDS = ["is", "the", "red", "circle", "left", "of", "blue", "square", "what", "color", "?"]
ANSWERS = ["yes", "no", "red", "blue", "2", "circle"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained model of the default kind (glimpses + word grounding) saved as `captioning vqa fit` would
    (vocabularies under "vqa")."""
    torch.manual_seed(0)
    vocab, answers = Vocabulary(WORDS), AnswerVocab(ANSWERS)
    model = build_vqa_model(SmallCNN(channels=(8, 16), out_dim=16, grid_size=4),
                            lambda v: QuestionEncoder(v, 8, 16, phrases=True),
                            lambda q, v, g: GroundedFusion(q, v, g, 16, 8, word_attention_dim=8), len(vocab),
                            len(answers), image_size=32, hidden_dim=12, dropout=0.0)
    return save_vqa(tmp_path_factory.mktemp("ask") / "tiny.ckpt", model, vocab, answers, 32)


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    """Two readable PNGs, an empty file and a corrupt one, in ``tmp_path/img``."""
    folder = tmp_path / "img"
    folder.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (32, 32), (30, 30, 200)).save(folder / "blue.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"not a png at all")
    return folder


def test_batched_answers_equal_one_by_one_answers(checkpoint: Path, images: Path) -> None:
    loaded = load_vqa(checkpoint)
    questions = ["is the red circle left of the blue square?", "what color is the circle?", "is the circle red?"]
    items = [AskItem(i + 1, name, images / name, q) for i, (name, q) in
             enumerate([("red.png", questions[0]), ("blue.png", questions[1]), ("red.png", questions[2]),
                        ("blue.png", questions[0])])]
    rows, errors = ask(loaded, items, k=3, batch_size=3)  # batches [red, blue, red] and [blue]
    assert errors == [] and [r["line"] for r in rows] == [1, 2, 3, 4]
    from captioning.data.images import load_image

    for item, row in zip(items, rows):
        alone = answer_batch(loaded, load_image(item.path, 32)[None], [encode_question(loaded.vocab, item.question)],
                             [0], k=3)[0]
        assert [a for a, _ in row["top"]] == [a for a, _ in alone]
        assert [s for _, s in row["top"]] == pytest.approx([s for _, s in alone], abs=1e-5)
        scores = [s for _, s in row["top"]]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        assert (row["answer"], row["score"]) == tuple(row["top"][0])
    with torch.no_grad():  # the scores are the sigmoid of the logits, not a softmax over answers
        tokens = torch.tensor([encode_question(loaded.vocab, questions[0])])
        logits = loaded.model(load_image(images / "red.png", 32)[None], tokens, torch.tensor([tokens.size(1)]),
                              torch.tensor([0]))
    assert rows[0]["score"] == pytest.approx(torch.sigmoid(logits).max().item(), abs=1e-5)


def test_ask_one_question_prints_the_top_answers(checkpoint: Path, images: Path, capsys) -> None:
    captioning_main(["vqa", "ask", "--checkpoint", str(checkpoint), "--image", str(images / "red.png"),
                     "--question", "What color is the circle?", "--top-k", "4"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("red.png: What color is the circle?") and "sigmoid score" in out[1]
    (row,), _ = ask(load_vqa(checkpoint), [AskItem(1, "red.png", images / "red.png", "what color is the circle?")])
    assert [line.split() for line in out[2:]] == [[a, f"{s:.4f}"] for a, s in row["top"][:4]]
    with pytest.raises(SystemExit, match="no known word"):
        captioning_main(["vqa", "ask", "--checkpoint", str(checkpoint), "--image", str(images / "red.png"),
                         "--question", "Quelle couleur ?"])


def test_questions_file_writes_answers_and_names_bad_lines(checkpoint: Path, images: Path, tmp_path: Path,
                                                           capsys) -> None:
    lines = [{"image": "img/red.png", "question": "what color is the circle?"},
             {"image": str(images / "blue.png"), "question": "is the blue square left of the red circle?"},
             {"image": "img/missing.png", "question": "what color is the circle?"},
             {"image": "img/red.png", "question": "xyzzy plugh?"},
             "{not json",
             {"image": "img/corrupt.png", "question": "is the circle red?"},
             {"question": "what color?"},
             {"image": "img/empty.png", "question": "is the circle red?"}]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines) + "\n")
    output = tmp_path / "out" / "answers.jsonl"
    summary = ask_main([ "--checkpoint", str(checkpoint), "--questions", str(questions),
                               "--output", str(output), "--batch-size", "2", "--top-k", "2"])
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and summary == {"answered": 2, "errors": 6, "output": str(output)}
    for r in rows:
        assert set(r) == {"line", "image", "question", "answer", "score", "top"}
        assert len(r["top"]) == 2 and r["answer"] in ANSWERS and r["top"][0] == [r["answer"], r["score"]]
    assert rows[0]["image"] == "img/red.png" and rows[1]["question"].startswith("is the blue square")
    errors = [json.loads(line) for line in (tmp_path / "out" / "answers.errors.jsonl").read_text().splitlines()]
    problems = {e["line"]: e["error"] for e in errors}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert "missing" in problems[3] and "missing.png" in problems[3]
    assert "no known word" in problems[4] and "not valid JSON" in problems[5]
    assert "cannot decode" in problems[6] and '"image"' in problems[7] and "empty file" in problems[8]
    err = capsys.readouterr().err
    assert f"{questions}: line 4: question: no known word" in err and "answered 2 questions, 6 errors" in err


def test_nothing_answered_exits_nonzero_and_clears_stale_errors(checkpoint: Path, images: Path,
                                                                tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"image": "img/missing.png", "question": "is the circle red?"}) + "\n")
    output = tmp_path / "a.jsonl"
    with pytest.raises(SystemExit, match="no question could be answered"):
        captioning_main(["vqa", "ask", "--checkpoint", str(checkpoint), "--questions", str(questions),
                         "--output", str(output)])
    assert output.read_text() == "" and (tmp_path / "a.errors.jsonl").is_file()
    questions.write_text(json.dumps({"image": "img/red.png", "question": "is the circle red?"}) + "\n")
    captioning_main(["vqa", "ask", "--checkpoint", str(checkpoint), "--questions", str(questions),
                     "--output", str(output)])
    assert len(output.read_text().splitlines()) == 1 and not (tmp_path / "a.errors.jsonl").exists()


def test_ask_needs_one_kind_of_input(checkpoint: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        captioning_main(["vqa", "ask", "--checkpoint", str(checkpoint), "--question", "is it red?"])
    assert exit_info.value.code == 2


def test_vqa_help_points_to_ask(capsys) -> None:
    with pytest.raises(SystemExit):
        captioning_main(["vqa", "--help"])
    assert "captioning vqa ask --help" in " ".join(capsys.readouterr().out.split())
