"""``captioning caption`` on Lightning's predict loop: one process per device, each journaling its shard.

Rank 0 plans the run (finds the images, resumes) and broadcasts the plan; Lightning's distributed sampler
gives each rank its share of the images (for prediction it neither pads nor repeats); every rank appends its
captions to its own journal after each batch; at the end rank 0 merges the journals into one output.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as L
from torch.utils.data import DataLoader

from captioning.inference.output import CaptionJob, Journal, make_error, make_row
from captioning.inference.shard_output import ShardJob
from captioning.training.predict_shards import ShardsDataModule, ShardWriter
from captioning.training.prediction_writer import CountingWriter
from captioning.data.images import image_loader
from captioning.core.runtime import keep_freed_memory
from captioning.inference.checkpoint import load_captioner
from captioning.inference.engine import (DecodeOptions, attention_maps, captions_text, decode_batch,
                                         has_attention_maps)
from captioning.models.captioner import Captioner
from captioning.data.vocab import Vocabulary


class CaptionPredictor(L.LightningModule):
    """Decodes image batches into output rows (and lists the batch's unreadable images).

    Args:
        captioner: The trained captioner.
        vocab: Its vocabulary.
        options: Decoding options.
    """

    def __init__(self, captioner: Captioner, vocab: Vocabulary, options: DecodeOptions) -> None:
        super().__init__()
        self.captioner, self.vocab, self.options = captioner.eval(), vocab, options

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        rows = []
        if batch["image"] is not None:
            out, features = decode_batch(self.captioner, self.options, images=batch["image"],
                                         batch_key=batch["first_index"])
            maps = (attention_maps(self.captioner, features, out) if self.options.attention
                    else [None] * out.tokens.size(0))
            rows = [make_row(ref, c, s, m) for ref, (c, s), m in zip(batch["refs"], captions_text(self.vocab, out),
                                                                      maps)]
        return {"rows": rows, "errors": [make_error(ref, reason) for ref, reason in batch["failed"]]}


class ImagesDataModule(L.LightningDataModule):
    """The images still to caption, planned once on rank 0 and shared with every rank.

    Args:
        job: The run's inputs and outputs.
        image_size: Side length images are resized to (from the checkpoint).
        batch_size: Images per batch.
        num_workers: DataLoader worker processes reading images (decoding overlaps with reading).
    """

    def __init__(self, job: CaptionJob, image_size: int, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.job, self.image_size, self.batch_size, self.num_workers = job, image_size, batch_size, num_workers
        self.plan: dict | None = None

    def setup(self, stage: str) -> None:
        plan: Any = None
        if self.trainer.is_global_zero:
            try:
                plan = self.job.plan()
            except (OSError, ValueError) as err:  # shared, so that no rank waits for a plan that never comes
                plan = err
        # Only the images to caption travel; the full plan (all images, rows kept) stays on rank 0.
        shared = self.trainer.strategy.broadcast(plan if isinstance(plan, Exception) else
                                                 plan and {"pending": plan["pending"]}, src=0)
        if isinstance(shared, Exception):
            raise shared
        self.plan = plan if self.trainer.is_global_zero else shared

    def predict_dataloader(self) -> DataLoader:
        return image_loader(self.plan["pending"], self.image_size, self.batch_size, self.num_workers)


class JournalWriter(CountingWriter):
    """Appends each batch's rows to this rank's journal; at the end rank 0 merges all journals.

    Args:
        progress: Show a progress bar (images/s) on rank 0.
    """

    def __init__(self, progress: bool = True) -> None:
        super().__init__(progress)
        self._journals: tuple[Journal, Journal] | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder, rank = trainer.datamodule.job.journals, trainer.global_rank
        self._journals = (Journal(folder / f"rank{rank}.captions.jsonl"), Journal(folder / f"rank{rank}.errors.jsonl"))
        self.start(trainer, "captioning", len(trainer.datamodule.plan["pending"]))

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: dict,
                           batch_indices: Any, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        captions, errors = self._journals
        captions.write(prediction["rows"])
        errors.write(prediction["errors"])
        self.count(trainer, prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for journal in self._journals:
            journal.close()
        self.finish(trainer, "captions-journaled")  # rank 0 merges the journals


def caption_collection(job: CaptionJob | ShardJob, checkpoint: str | Path, options: DecodeOptions, batch_size: int = 64,
                       num_workers: int = 2, accelerator: str = "cpu", devices: int = 1, precision: str = "32-true",
                       progress: bool = True) -> dict:
    """What ``captioning caption`` runs: the job's images through the checkpoint's captioner on ``devices``
    processes, journaled, merged into one atomic output (a :class:`ShardJob`: each rank its own shards, one
    atomic output per shard).

    Returns:
        The summary (``captioned``, ``kept``, ``errors``, ``total``, ``seconds``, ``output``, ``errors_file``;
        only ``output``/``errors_file`` on ranks other than 0).
    """
    keep_freed_memory()  # 2× encoder throughput on CPU (see captioning.core.runtime)
    loaded = load_captioner(checkpoint)
    if options.attention and not has_attention_maps(loaded.model.decoder):
        raise ValueError(f"{checkpoint}: --attention needs an attention decoder (show_attend_tell, att2in, updown, "
                         f"or rwkv/mamba/transformer with grid: true); "
                         f"this checkpoint's decoder is {loaded.meta['decoder'].get('name', 'rnn')}")
    shards = isinstance(job, ShardJob)
    writer = ShardWriter(progress=progress) if shards else JournalWriter(progress=progress)
    data = (ShardsDataModule if shards else ImagesDataModule)(job, loaded.image_size, batch_size, num_workers)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no accelerator banner
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*predict_dataloader.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning's own, about its torch version
        warnings.filterwarnings("ignore", ".*infer the batch indices.*")  # tar shards: an IterableDataset
        trainer = L.Trainer(accelerator=accelerator, devices=devices, precision=precision,
                            strategy="ddp" if devices > 1 else "auto", logger=False, callbacks=[writer],
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.predict(CaptionPredictor(loaded.model, loaded.vocab, options),
                        datamodule=data,
                        return_predictions=False)
    summary = writer.summary or {}
    summary.update(output=str(job.output), errors_file=str(job.errors))
    return summary
