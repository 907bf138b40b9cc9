"""Writes ``predict`` results once, on rank 0, after gathering every rank's rows: :class:`CaptionWriter` as a
COCO results file (``[{"image_id", "caption", "score"}]``); the VQA answer writer builds on :class:`ResultsWriter`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as L
from pytorch_lightning.callbacks import BasePredictionWriter

from captioning.core.io import write_json_atomic
from captioning.training.distributed import gather_objects


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
