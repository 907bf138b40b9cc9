"""``captioning caption`` over tar shards on Lightning's predict loop: every rank captions its own shards.

Rank 0 lists the shards (skipping finished ones under ``--resume``) and broadcasts the list; rank ``r`` of
``w`` takes every ``w``-th shard from the ``r``-th (across nodes too: the rank is global), its DataLoader
workers split those again, and each shard's output is written atomically by the rank that read it as soon
as its last batch is decoded. Nothing is merged across ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as L
from torch.utils.data import DataLoader

from captioning.data.shards import ShardImages
from captioning.inference.shard_output import ShardJob
from captioning.training.prediction_writer import CountingWriter
from captioning.core.runtime import worker_context


class ShardsDataModule(L.LightningDataModule):
    """This rank's shards, from a plan made once on rank 0.

    Args:
        job: The run's shards and output folder.
        image_size: Side length images are resized to (from the checkpoint).
        batch_size: Samples per batch (a batch never spans two shards).
        num_workers: DataLoader worker processes, each reading whole shards.
    """

    def __init__(self, job: ShardJob, image_size: int, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.job, self.image_size, self.batch_size, self.num_workers = job, image_size, batch_size, num_workers
        self.plan: dict | None = None
        self.mine: list[tuple[int, Path]] = []

    def setup(self, stage: str) -> None:
        plan: Any = None
        if self.trainer.is_global_zero:
            try:
                plan = self.job.plan()
            except (OSError, ValueError) as err:  # shared, so that no rank waits for a plan that never comes
                plan = err
        shared = self.trainer.strategy.broadcast(plan, src=0)
        if isinstance(shared, Exception):
            raise shared
        self.plan = shared
        self.mine = shared["pending"][self.trainer.global_rank::self.trainer.world_size]

    def predict_dataloader(self) -> DataLoader:
        workers = min(self.num_workers, len(self.mine))
        return DataLoader(ShardImages(self.mine, self.image_size, self.batch_size), batch_size=None,
                          num_workers=workers, multiprocessing_context=worker_context(workers))


class ShardWriter(CountingWriter):
    """Keeps each shard's rows until its last batch, then writes the shard's output; rank 0 sums up at the end.

    Args:
        progress: Show a progress bar (images/s) on rank 0.
    """

    def __init__(self, progress: bool = True) -> None:
        super().__init__(progress)
        self._open: dict[str, tuple[list[dict], list[dict]]] = {}

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start(trainer, "captioning shards")

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: dict,
                           batch_indices: Any, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        rows, errors = self._open.setdefault(batch["shard"], ([], []))
        rows.extend(prediction["rows"])
        errors.extend(prediction["errors"])
        if batch["shard_end"]:
            trainer.datamodule.job.write_shard(Path(batch["shard"]), *self._open.pop(batch["shard"]))
        self.count(trainer, prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._open:
            raise RuntimeError(f"shards read without their last batch: {sorted(self._open)}")
        self.finish(trainer, "shards-written")
