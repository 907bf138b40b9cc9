"""Writes ``predict`` results once, on rank 0, after gathering every rank's rows: :class:`CaptionWriter` as a
COCO results file (``[{"image_id", "caption", "score"}]``), :class:`AnswerWriter` as an official VQA results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as L
from pytorch_lightning.callbacks import BasePredictionWriter

from captioning.core.io import write_json_atomic
from captioning.data.vqa_files import write_results
from captioning.training.distributed import gather_objects
from captioning.training.vqa_data import VQADataModule


class ResultsWriter(BasePredictionWriter):
    """Collects every rank's ``predict`` rows at the end of the epoch; rank 0 writes them with :meth:`write`.

    Args:
        output: Results file; a relative path is placed under the trainer's ``default_root_dir``.
    """

    def __init__(self, output: str) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        rows = gather_objects([row for batch in predictions for row in batch], trainer.world_size)
        path = Path(self.output)
        self.path = path if path.is_absolute() else Path(trainer.default_root_dir) / path
        if trainer.is_global_zero:
            self.write(trainer, rows)

    def write(self, trainer: L.Trainer, rows: list[dict]) -> None:
        """Writes all ranks' rows to :attr:`path` (called on rank 0 only)."""
        raise NotImplementedError


class CaptionWriter(ResultsWriter):
    """Writes every image's caption once (the distributed sampler repeats images to pad), atomically.

    Args:
        output: Results file; a relative path is placed under the trainer's ``default_root_dir``.
    """

    def __init__(self, output: str = "predictions.json") -> None:
        super().__init__(output)

    def write(self, trainer: L.Trainer, rows: list[dict]) -> None:
        unique = {row["image_id"]: row for row in rows}
        write_json_atomic(self.path, [unique[i] for i in sorted(unique)])


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
