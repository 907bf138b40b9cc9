"""Interrupted runs that resume exactly: atomic checkpoint files, a findable step-interval ``last.ckpt``,
and training randomness that depends only on the step.

With these three (all in ``configs/shapes.yaml``) and the resumable training loader
(:mod:`captioning.training.resumable`), ``captioning fit ... --ckpt_path last`` continues a killed run from
its latest checkpoint and ends with the same weights and metrics as a run that was never interrupted; the
steps trained after that checkpoint and before the kill are trained again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as L
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from captioning.core.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, flushes it to disk, then renames it into place.

    Lightning's own writer stages the file in the system temporary folder and *moves* it, which is a copy
    (a kill mid-copy leaves a truncated checkpoint) when that folder is on another filesystem, and never
    ``fsync``s. Here a killed or crashed save leaves the previous checkpoint intact. Remote URLs
    (``s3://`` …) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        directory = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


class LastCheckpoint(ModelCheckpoint):
    """The latest weights as ``last.ckpt``: every ``every_n_train_steps`` steps and after every epoch.

    ``--ckpt_path last`` finds the newest ``last.ckpt`` anywhere under the trainer's ``default_root_dir``
    and the loggers' ``save_dir``, so a resumed run (which logs into a new ``version_N`` or W&B run) finds
    the interrupted run's checkpoint.

    Args:
        every_n_train_steps: Also save after every this many optimizer steps (``None``: epoch ends only).
        filename: File name without ``.ckpt``.
        enable_version_counter: ``False``: overwrite the one file instead of adding ``-v1`` …
        **kwargs: Other ``ModelCheckpoint`` options (``dirpath`` …).
    """

    def __init__(self, every_n_train_steps: int | None = None, filename: str = "last",
                 enable_version_counter: bool = False, **kwargs: Any) -> None:
        super().__init__(every_n_train_steps=every_n_train_steps, filename=filename,
                         enable_version_counter=enable_version_counter, **kwargs)

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        found = super()._find_last_checkpoints(trainer)
        name = f"{self.filename}{self.FILE_EXTENSION}"
        roots = {Path(trainer.default_root_dir)} | {Path(lg.save_dir) for lg in trainer.loggers if lg.save_dir}
        return found | {os.path.normpath(p) for root in roots for p in root.rglob(name)}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # Lightning restores a stateful training loader only when it builds the loader after the restore;
        # ``estimated_stepping_batches`` (read by ``configure_optimizers``) builds it before. Hand the
        # restored position over here, before the first batch is drawn.
        loop = trainer.fit_loop
        if loop._combined_loader is not None and loop._combined_loader_states_to_load:
            loop._combined_loader._load_state_dicts(loop._combined_loader_states_to_load)
            loop._combined_loader_states_to_load = []

    def _save_epoch_end(self, trainer: L.Trainer) -> None:
        """With a step interval, Lightning would not save at epoch ends; the latest state is wanted there too."""
        if self._every_n_train_steps < 1 or trainer.sanity_checking or trainer.fast_dev_run:
            return
        if trainer.state.fn != "fit":
            return
        self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_epoch_end(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_epoch_end(trainer)


class ReseedEveryStep(Callback):
    """Seeds torch's generator from ``(seed, global step, rank)`` before every training step.

    Dropout masks and sampled captions then depend only on the step, not on everything that drew random
    numbers before it (data-loader iterators, a resumed run's restart), so a resumed run draws the same
    numbers as an uninterrupted one.

    Args:
        seed: Base seed; defaults to ``seed_everything``'s (``PL_GLOBAL_SEED``), else 0.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        base = int(os.environ.get("PL_GLOBAL_SEED", 0)) if self.seed is None else self.seed
        sequence = np.random.SeedSequence([base, trainer.global_step, trainer.global_rank])
        torch.manual_seed(int(sequence.generate_state(1, dtype=np.uint64)[0]) >> 1)
