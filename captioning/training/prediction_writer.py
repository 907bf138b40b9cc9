"""What both ``captioning caption`` writers share: rank 0's progress bar and the end-of-run summary."""

from __future__ import annotations

import time

import pytorch_lightning as L
from pytorch_lightning.callbacks import BasePredictionWriter
from tqdm import tqdm


class CountingWriter(BasePredictionWriter):
    """A per-batch prediction writer that shows images/s on rank 0 and, once every rank is done, has rank 0 sum
    the run up with ``trainer.datamodule.job.finish(plan)`` (in :attr:`summary`, with ``seconds``).

    Args:
        progress: Show a progress bar (images/s) on rank 0.
    """

    def __init__(self, progress: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.progress = progress
        self.summary: dict | None = None
        self._bar: tqdm | None = None
        self._start = 0.0

    def start(self, trainer: L.Trainer, desc: str, total: int | None = None) -> None:
        """Starts the clock, and the bar on rank 0."""
        if trainer.is_global_zero and self.progress:
            self._bar = tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True, smoothing=0.1)
        self._start = time.perf_counter()

    def count(self, trainer: L.Trainer, prediction: dict) -> None:
        """Advances the bar by a batch's images; rank 0 sees its own share, so it scales by the processes."""
        if self._bar is not None:
            seen = (len(prediction["rows"]) + len(prediction["errors"])) * trainer.world_size
            self._bar.update(seen if self._bar.total is None else min(seen, self._bar.total - self._bar.n))

    def finish(self, trainer: L.Trainer, what: str) -> None:
        """Closes the bar; after every rank has ``what`` done, rank 0 sums the run up."""
        if self._bar is not None:
            self._bar.close()
        trainer.strategy.barrier(f"{what}-done")
        if trainer.is_global_zero:
            self.summary = trainer.datamodule.job.finish(trainer.datamodule.plan)
            self.summary["seconds"] = time.perf_counter() - self._start
        trainer.strategy.barrier(f"{what}-summed")
