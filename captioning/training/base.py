"""The Lightning base of the captioning and VQA modules: what both do around their models.

Validation and test collect rows per batch (:meth:`EvaluatedModule.evaluate_batch`), gather every rank's rows
at the epoch's end, merge them (each image or question once) and log the metrics that
:meth:`EvaluatedModule.evaluation_metrics` computes on the union, identically on every rank. Training losses go
through :meth:`EvaluatedModule.check_finite` (a NaN/inf stops every rank at the same step); optimizers come
from the injected callables; checkpoints carry :meth:`EvaluatedModule.checkpoint_meta` under
:attr:`EvaluatedModule.checkpoint_key`.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as L
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from captioning.training.distributed import gather_objects
from captioning.training.schedules import configure_optimization


class EvaluatedModule(L.LightningModule):
    """Evaluation collection and gathering, the NaN guard, optimization and checkpoint metadata.

    Subclasses state what differs: :meth:`evaluate_batch`, :meth:`merge_rows`, :meth:`evaluation_metrics`,
    :attr:`checkpoint_key` and :meth:`checkpoint_meta`.

    Args:
        optimizer: Optimizer class and options.
        lr_scheduler: Optional learning-rate scheduler class and options (see
            :func:`captioning.training.schedules.configure_optimization`).
    """

    checkpoint_key: str = ""

    def __init__(self, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None) -> None:
        super().__init__()
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self._rows: list[Any] = []

    def evaluate_batch(self, batch: dict, stage: str) -> list[Any]:
        """This rank's rows of one validation/test batch (picklable, gathered across ranks)."""
        raise NotImplementedError

    def merge_rows(self, rows: list[Any]) -> Any:
        """All ranks' rows merged (e.g. keyed by image, each once); empty when nothing was evaluated."""
        return rows

    def evaluation_metrics(self, merged: Any, stage: str) -> dict[str, float]:
        """The metrics of the merged rows of ``stage`` (``val`` or ``test``), logged as ``stage/name``."""
        raise NotImplementedError

    def checkpoint_meta(self) -> dict:
        """Plain data stored in checkpoints under :attr:`checkpoint_key` (what loading the model needs)."""
        raise NotImplementedError

    def check_finite(self, loss: Tensor) -> None:
        """Stops training with the step number when the (global) loss is NaN or infinite."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at global step {self.global_step}")

    def _collect(self, batch: dict, stage: str) -> None:
        self._rows.extend(self.evaluate_batch(batch, stage))

    def _finish(self, stage: str) -> None:
        merged = self.merge_rows(gather_objects(self._rows, self.trainer.world_size))
        self._rows = []
        if not merged or self.trainer.sanity_checking:
            return
        metrics = self.evaluation_metrics(merged, stage)
        # Every rank computed the same numbers on the union of all ranks' rows: no averaging needed.
        self.log_dict({f"{stage}/{k.replace('/', '_')}": float(v) for k, v in metrics.items()}, rank_zero_only=False)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def configure_optimizers(self):
        return configure_optimization(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.checkpoint_key] = self.checkpoint_meta()
