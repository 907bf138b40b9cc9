"""The VQA commands.

* ``captioning vqa fit|validate|test|predict --config configs/vqa/shapes.yaml`` — LightningCLI over
  :class:`~captioning.training.vqa.VQAModule` and a VQA data module (vocabularies and image size linked).
* ``captioning vqa ask --checkpoint CKPT --image IMG --question "…"`` (or ``--questions FILE.jsonl``) —
  the top answers of a trained model, with their sigmoid scores (:mod:`captioning.inference.vqa`).
* ``captioning vqa-evaluate --questions Q.json --annotations A.json --results R.json [--output M.json]`` —
  the official VQA accuracy of a results file.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningArgumentParser

from captioning.training.vqa_data import VQADataModule
from captioning.data.vqa_files import VQAFileError, check_questions_match, read_annotations, read_questions, read_results
from captioning.core.io import write_json_atomic
from captioning.inference.checkpoint import load_vqa
from captioning.inference.output import errors_path, write_output
from captioning.inference.vqa import AskItem, ask, read_questions_file
from captioning.training.cli import MachineAwareCLI
from captioning.training.vqa import VQAModule
from captioning.metrics.vqa import vqa_accuracy


class VQACLI(MachineAwareCLI):
    """LightningCLI whose derived values (question and answer vocabularies, image size) come from the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.answer_vocab", "model.answer_vocab", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")


ASK_HINT = "Also: captioning vqa ask --help (answer questions about image files with a checkpoint)."


def vqa_cli_main(args: list[str] | None = None, run: bool = True) -> VQACLI:
    """Runs the VQA LightningCLI on ``args`` and returns it."""
    return VQACLI(VQAModule, VQADataModule, subclass_mode_data=True, save_config_kwargs={"overwrite": True},
                  parser_kwargs={"prog": "captioning vqa", "epilog": ASK_HINT}, args=args, run=run)


def main(argv: list[str] | None = None) -> None:
    """``captioning vqa ...``: ``ask`` (:func:`ask_main`), else LightningCLI."""
    argv = sys.argv[2:] if argv is None else argv
    if argv and argv[0] == "ask":
        ask_main(argv[1:])
        return
    with warnings.catch_warnings():  # argv is the part of sys.argv after "vqa", not a mistake
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        vqa_cli_main(argv)


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


def ask_parser() -> argparse.ArgumentParser:
    """The options of ``captioning vqa ask``."""
    p = argparse.ArgumentParser(prog="captioning vqa ask", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Answer questions about images with a trained VQA checkpoint. Scores "
                                            "are sigmoid outputs (the model is trained with binary cross-entropy "
                                            "on soft scores): each in [0, 1], not summing to 1.")
    p.add_argument("--checkpoint", required=True, help="checkpoint of `captioning vqa fit`")
    p.add_argument("--image", help="image file (with --question)")
    p.add_argument("--question", help="question about --image")
    p.add_argument("--questions", help='JSON-lines file, one {"image": PATH, "question": TEXT} per line; image '
                                       "paths relative to the file's folder or absolute")
    p.add_argument("--output", default="answers.jsonl", help="answers of --questions (JSON lines); unanswerable "
                                                             "lines go to OUTPUT's name + .errors.jsonl")
    p.add_argument("--top-k", type=int, default=5, help="answers reported per question")
    p.add_argument("--batch-size", type=int, default=64, help="questions per batch")
    p.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda, cuda:1, ...)")
    return p


def ask_main(argv: list[str] | None = None) -> dict:
    """``captioning vqa ask``; exits with status 1 when no question could be answered."""
    parser = ask_parser()
    args = parser.parse_args(argv)
    if (args.questions is None) == (args.image is None or args.question is None):
        parser.error("give either --image and --question, or --questions FILE.jsonl")
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")
    try:
        loaded = load_vqa(args.checkpoint, map_location=args.device)
        loaded.model.to(args.device)
        if args.questions is None:
            items, bad = [AskItem(1, args.image, Path(args.image).expanduser(), args.question)], []
        else:
            items, bad = read_questions_file(args.questions)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"captioning vqa ask: error: {err}")
    rows, errors = ask(loaded, items, args.top_k, args.batch_size)
    errors = sorted(bad + errors, key=lambda e: e["line"])
    if args.questions is None:
        return _print_answers(rows, errors)
    return _write_answers(Path(args.output), rows, errors, args.questions)


def _print_answers(rows: list[dict], errors: list[dict]) -> dict:
    """Prints one question's top answers (or its error) as a table."""
    if errors:
        sys.exit(f"captioning vqa ask: error: {errors[0]['error']}")
    row = rows[0]
    print(f"{row['image']}: {row['question']}")
    width = max(len(a) for a, _ in row["top"])
    print(f"  {'answer':<{width}}  sigmoid score")
    for answer, score in row["top"]:
        print(f"  {answer:<{width}}  {score:.4f}")
    return row


def _write_answers(output: Path, rows: list[dict], errors: list[dict], source: str) -> dict:
    """Writes the answers (and the errors file, or removes a stale one) atomically; reports on stderr."""
    write_output(output, rows, "jsonl")
    failed = errors_path(output)
    if errors:
        write_output(failed, errors, "jsonl")
    else:
        failed.unlink(missing_ok=True)
    for e in errors:
        print(f"{source}: line {e['line']}: {e['error']}", file=sys.stderr)
    print(f"answered {len(rows)} questions, {len(errors)} errors" + (f" (listed in {failed})" if errors else "")
          + f"; wrote {output}", file=sys.stderr)
    if not rows:
        sys.exit("captioning vqa ask: error: no question could be answered")
    return {"answered": len(rows), "errors": len(errors), "output": str(output)}
