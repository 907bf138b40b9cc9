"""Experiment tracking: the resolved config sent to every logger, and sample captions as a W&B table.

Used through configs: ``--config configs/logger/wandb.yaml`` adds Weights & Biases on top of any run
config; without it the default logger (TensorBoard, or CSV when TensorBoard is missing) records the same
metrics and the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as L
import yaml
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_only

KNOWN_COLUMNS = ("image_id", "caption", "references")


class LogConfigToLoggers(SaveConfigCallback):
    """Writes ``config.yaml`` beside the checkpoints (as LightningCLI does) and also logs the fully resolved
    config to every logger as the hyperparameter ``config`` (W&B run config, TensorBoard/CSV hparams)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


def table_rows(rows: dict[int, dict], image_paths: dict[int, Path], limit: int) -> tuple[list[str], list[list]]:
    """Columns and rows of a sample table from the module's per-image evaluation rows.

    Every key of a row becomes a column (``image_id``, ``caption``, ``references`` first, in that order,
    then any others such as hallucinated words), and ``image`` holds the image path when known.

    Args:
        rows: ``image_id`` → row dict, as gathered after validation.
        image_paths: ``image_id`` → image file.
        limit: At most this many rows, the lowest image ids first.
    """
    ids = sorted(rows)[:limit]
    extra = sorted({k for i in ids for k in rows[i]} - set(KNOWN_COLUMNS))
    columns = ["image", *KNOWN_COLUMNS, *extra]
    table = []
    for i in ids:
        row = rows[i]
        refs = row.get("references", [])
        table.append([image_paths.get(i), i, row.get("caption"), "\n".join(refs),
                      *(_cell(row.get(k)) for k in extra)])
    return columns, table


def _cell(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple, set)) else value


class WandbSampleCaptions(L.Callback):
    """After each validation, logs ``val/samples``: a ``wandb.Table`` of images, references and captions.

    Reads the module's ``evaluation_rows`` (every image once, gathered across ranks), so any key another
    feature adds to those rows appears as a column. Does nothing without a ``WandbLogger``.

    Args:
        num_samples: Images in the table (the lowest ids, so epochs are comparable).
    """

    def __init__(self, num_samples: int = 16) -> None:
        self.num_samples = num_samples

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from pytorch_lightning.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        rows = getattr(pl_module, "evaluation_rows", None)
        if not loggers or not rows or trainer.sanity_checking:
            return
        import wandb

        images = getattr(trainer.datamodule, "images", None)
        paths = {im.image_id: im.path for im in images("val")} if callable(images) else {}
        columns, table = table_rows(rows, paths, self.num_samples)
        data = [[wandb.Image(str(r[0])) if r[0] is not None else None, *r[1:]] for r in table]
        for logger in loggers:
            logger.log_table("val/samples", columns=columns, data=data, step=trainer.global_step)
