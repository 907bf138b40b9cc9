"""The VQA main job (scripts/vqa_main.py) end to end on a tiny shapes set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import REPO, load_script, shapes_overrides


def test_vqa_main_job_trains_answers_and_evaluates(tiny_shapes: Path, tmp_path: Path, capsys) -> None:
    job = load_script("vqa_main.py")
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)  # the VQA files are written beside the scenes
    out = tmp_path / "run"
    acc = job.main(["--config", str(REPO / "configs/vqa/shapes.yaml"), "--out", str(out), *shapes_overrides(root),
                    "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"])
    questions = json.loads((root / "vqa/v2_OpenEnded_shapes_test_questions.json").read_text())["questions"]
    results = json.loads((out / "vqa_results_test.json").read_text())
    assert [r["question_id"] for r in results] == [q["question_id"] for q in questions]  # every test question
    written = json.loads((out / "vqa_metrics_test.json").read_text())
    assert written["overall"] == acc["overall"] and set(written["perAnswerType"]) <= {"yes/no", "number", "other"}
    printed = capsys.readouterr().out
    assert "Overall Accuracy is:" in printed and "Per Answer Type Accuracy" in printed
