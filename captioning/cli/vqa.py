"""The VQA commands.

* ``captioning vqa fit|validate|test|predict --config configs/vqa/shapes.yaml`` — LightningCLI over
  :class:`~captioning.training.vqa.VQAModule` and a VQA data module (vocabularies and image size linked).
* ``captioning vqa-evaluate --questions Q.json --annotations A.json --results R.json [--output M.json]`` —
  the official VQA accuracy of a results file.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pytorch_lightning as L
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from captioning.training.vqa_data import VQADataModule
from captioning.data.vqa_files import (VQAFileError, check_questions_match, read_annotations, read_questions,
                                       read_results, write_results)
from captioning.core.io import write_json_atomic
from captioning.training.writers import ResultsWriter
from captioning.training.vqa import VQAModule
from captioning.metrics.vqa import vqa_accuracy


class VQACLI(LightningCLI):
    """LightningCLI whose derived values (question and answer vocabularies, image size) come from the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.answer_vocab", "model.answer_vocab", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")


def vqa_cli_main(args: list[str] | None = None, run: bool = True) -> VQACLI:
    """Runs the VQA LightningCLI on ``args`` and returns it."""
    return VQACLI(VQAModule, VQADataModule, subclass_mode_data=True, save_config_kwargs={"overwrite": True},
                  parser_kwargs={"prog": "captioning vqa"}, args=args, run=run)


def main(argv: list[str] | None = None) -> None:
    """``captioning vqa ...``"""
    with warnings.catch_warnings():  # argv is the part of sys.argv after "vqa", not a mistake
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        vqa_cli_main(sys.argv[2:] if argv is None else argv)


class AnswerWriter(ResultsWriter):
    """Writes ``predict`` answers as an official results / submission file ``[{"question_id", "answer"}]``.

    Args:
        output: Results file; a relative path is placed under the trainer's ``default_root_dir``. For a
            test-dev/test-std submission name it ``vqa_OpenEnded_mscoco_test-dev2015_<method>_results.json``.
    """

    def __init__(self, output: str = "vqa_results.json") -> None:
        super().__init__(output)

    def write(self, trainer: L.Trainer, rows: list[dict]) -> None:
        answers = {r["question_id"]: r["answer"] for r in rows}
        questions = None
        if isinstance(trainer.datamodule, VQADataModule):  # every question of the split answered, in file order
            questions = [{"question_id": q} for img in trainer.datamodule.images("predict") for q in img.question_ids]
        write_results(self.path, answers, questions)


def evaluate_files(questions: str | Path, annotations: str | Path, results: str | Path) -> dict:
    """Official accuracy of a results file; raises a :class:`VQAFileError` naming the file for bad input."""
    qs, anns = read_questions(questions), read_annotations(annotations)
    check_questions_match(qs, anns, questions, annotations)
    answers = read_results(results, [a["question_id"] for a in anns])
    return vqa_accuracy(anns, answers)


def format_accuracy(acc: dict) -> str:
    """Human-readable overall, per-answer-type and per-question-type accuracy."""
    lines = [f"Overall Accuracy is: {acc['overall']:.2f}", "Per Answer Type Accuracy is the following:"]
    lines += [f"  {k} : {v:.2f}" for k, v in sorted(acc["perAnswerType"].items())]
    lines.append("Per Question Type Accuracy is the following:")
    lines += [f"  {k} : {v:.2f}" for k, v in sorted(acc["perQuestionType"].items())]
    return "\n".join(lines)


def evaluate_main(argv: list[str] | None = None) -> dict:
    """``captioning vqa-evaluate``: prints the accuracy and writes it (with ``per_question``) to ``--output``."""
    parser = argparse.ArgumentParser(prog="captioning vqa-evaluate",
                                     description="Official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py) of a "
                                                 "results file [{\"question_id\", \"answer\"}].")
    parser.add_argument("--questions", required=True, help="VQA v2 questions JSON")
    parser.add_argument("--annotations", required=True, help="VQA v2 annotations JSON (10 answers per question)")
    parser.add_argument("--results", required=True, help="results JSON: one answer per annotated question")
    parser.add_argument("--output", help="metrics JSON to write (overall, perAnswerType, perQuestionType, "
                                         "per_question)")
    args = parser.parse_args(argv)
    try:
        acc = evaluate_files(args.questions, args.annotations, args.results)
    except (VQAFileError, FileNotFoundError) as err:
        parser.exit(2, f"captioning vqa-evaluate: error: {err}\n")
    print(format_accuracy(acc))
    if args.output:
        write_json_atomic(args.output, {**acc, "per_question": {str(k): v for k, v in acc["per_question"].items()}})
        print(f"Wrote {args.output}")
    return acc
