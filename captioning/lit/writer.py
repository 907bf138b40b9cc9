"""Writes ``predict`` results as a COCO results file (``[{"image_id", "caption", "score"}]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as L
from pytorch_lightning.callbacks import BasePredictionWriter

from captioning.io import write_json_atomic
from captioning.lit.module import gather_by_image


class CaptionWriter(BasePredictionWriter):
    """Collects every rank's captions at the end of ``predict`` and writes them once, atomically.

    Args:
        output: Results file; a relative path is placed under the trainer's ``default_root_dir``.
    """

    def __init__(self, output: str = "predictions.json") -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        unique = gather_by_image([row for batch in predictions for row in batch], trainer.world_size)
        path = Path(self.output)
        self.path = path if path.is_absolute() else Path(trainer.default_root_dir) / path
        if trainer.is_global_zero:
            write_json_atomic(self.path, [unique[i] for i in sorted(unique)])
