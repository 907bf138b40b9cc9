"""The training module: loss, logging and decoding calls around an injected encoder and decoder."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from captioning.inference.checkpoint import KEY, captioner_meta, load_weights
from captioning.inference.engine import DecodeOptions, caption_batch
from captioning.data.features import check_identity
from captioning.training.base import EvaluatedModule
from captioning.training.objectives import Objective
from captioning.metrics import compute_caption_metrics
from captioning.metrics.chair import Chair
from captioning.models.captioner import build_captioner
from captioning.data.vocab import Vocabulary

DecoderFactory = Callable[[int, int], nn.Module]  # (vocab_size, feature_dim) -> decoder


class CaptioningModule(EvaluatedModule):
    """Trains a :class:`Captioner` with cross-entropy and evaluates it on decoded captions.

    Args:
        encoder: Image encoder (e.g. ``captioning.models.SmallCNN``).
        decoder: Decoder class and options; built here with the vocabulary size and the encoder's width (its grid's
            width for a decoder that attends; see :func:`captioning.models.captioner.build_captioner`).
        vocab: Linked from the data module.
        optimizer: Optimizer class and options.
        lr_scheduler: Optional learning-rate scheduler class and options; stepped per epoch unless it has
            ``interval = "step"``; one with a ``total_steps`` of ``None`` gets the run's step count.
        image_size: Linked from the data module; stored in checkpoints for captioning new images.
        max_len: Maximum words per decoded caption.
        beam_size: 1 decodes greedily; larger runs batched beam search.
        length_penalty: Length-penalty exponent for beam search.
        num_examples: Decoded captions printed after each validation.
        synonyms: CHAIR synonym table, linked from the data module; with it (and instance annotations in the
            batches) validation/test also log CHAIRs and CHAIRi. ``None``: no CHAIR.
        chair_mode: ``reference`` (the published CHAIR numbers) or ``fixed`` (its quirks fixed).
        cached_features: Linked from the data module: the record of the feature cache its batches come from
            (``None`` without one); checked against the encoder, whose forward pass is then skipped.
        label_smoothing: Cross-entropy label smoothing (0 = none; 0.1 is common).
        objective: Training loss other than cross-entropy, called as ``objective(module, batch)``, e.g.
            :class:`captioning.training.scst.SelfCritical`.
        init_weights: Checkpoint whose captioner weights initialize the model (e.g. a cross-entropy model
            to fine-tune with SCST); unlike ``--ckpt_path`` it restores no optimizer or loop state.
        compile: Opt-in ``torch.compile`` of the encoder and decoder (``nn.Module.compile``, so checkpoint
            keys are unchanged): ``True`` for the defaults, or a dict of ``torch.compile`` options.
    """

    def __init__(self, encoder: nn.Module, decoder: DecoderFactory, vocab: Vocabulary | None = None,
                 optimizer: OptimizerCallable = torch.optim.Adam, lr_scheduler: LRSchedulerCallable | None = None,
                 image_size: int = 224, max_len: int = 20, beam_size: int = 1, length_penalty: float = 0.0,
                 num_examples: int = 3, synonyms: str | None = None, chair_mode: str = "reference",
                 cached_features: dict | None = None, label_smoothing: float = 0.0,
                 objective: Objective | None = None, init_weights: str | None = None,
                 compile: bool | dict = False) -> None:
        super().__init__(optimizer, lr_scheduler)
        if vocab is None:
            raise ValueError("CaptioningModule needs the vocabulary (linked from the data module's 'vocab')")
        if cached_features is not None:
            check_identity(cached_features, encoder, image_size)
        self.save_hyperparameters(ignore=["encoder", "decoder", "vocab", "optimizer", "lr_scheduler",
                                          "cached_features", "objective"])
        self.cached_features = cached_features
        self.vocab = vocab
        self.captioner = build_captioner(encoder, decoder, len(vocab))
        self.objective = objective
        if init_weights:
            load_weights(self.captioner, init_weights)
        self._chair = Chair.from_file(synonyms, mode=chair_mode) if synonyms else None
        self._chair_truth: dict[int, set[str]] = {}  # image id -> CHAIR ground-truth categories
        self.evaluation_rows: dict[int, dict] = {}  # the last evaluation's rows (e.g. for sample tables)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.objective is not None:
            return self.objective(self, batch)
        tokens = batch["tokens"]  # (N, T): <START> w_1 … w_n <END> <PAD> …, N captions of B images
        v = self.features(batch)[batch["owner"]]  # (N, D) or grids (N, R, D): each image encoded once
        logits = self.captioner.decoder(v, tokens[:, :-1])  # (N, T-1, V)
        loss = self.token_mean_loss(logits, tokens[:, 1:])
        penalty = getattr(self.captioner.decoder, "penalty", None)  # e.g. show_attend_tell's attention regularizer
        if penalty is not None:
            self.log("train/attention_penalty", penalty, batch_size=tokens.size(0))
            loss = loss + penalty
        return loss

    def token_mean_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy per non-pad token of the global batch (all ranks); see :meth:`global_token_mean`.

        Args:
            logits: Next-token logits, (N, T, V).
            targets: Target tokens with ``<PAD>`` where nothing is predicted, (N, T).
        """
        summed = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=self.vocab.pad_id,
                                 reduction="sum", label_smoothing=self.hparams.label_smoothing)
        return self.global_token_mean(summed, (targets != self.vocab.pad_id).sum(), "train/loss")

    def global_token_mean(self, summed: Tensor, count: Tensor, name: str) -> Tensor:
        """The loss to back-propagate for a per-token loss summed over this rank's ``count`` tokens.

        Each rank divides by the mean token count per rank, so DDP's gradient average equals the gradient of
        the combined batch even when ranks hold different numbers of tokens (one all-reduce per step; in a
        single process this is the ordinary mean). The global mean is logged as ``name`` and checked:
        a NaN/inf stops training on every rank at the same step.
        """
        local = torch.stack([count.to(summed), summed.detach()])  # (2,)
        tokens, total = self.trainer.strategy.reduce(local.clone(), reduce_op="sum").unbind()
        self.check_finite(total / tokens)
        self.log(name, total / tokens.clamp(min=1), prog_bar=True, batch_size=int(count))
        return summed * self.trainer.world_size / tokens.clamp(min=1)

    def features(self, batch: dict) -> Tensor:
        """Pooled features (B, D) of a batch: the encoder's, or the cache's when the batch carries them."""
        if "features" not in batch:
            return self.captioner.encode(batch["image"])
        if self.cached_features is None:
            raise ValueError("the batch carries cached features but the model was not given the cache's record "
                             "(cached_features, linked from the data module's feature_identity)")
        grid = getattr(self.captioner.decoder, "needs_grid", False)
        if grid != (batch["features"].dim() == 3):
            raise ValueError(f"the {self.captioner.decoder.config.get('name', 'rnn')} decoder reads "
                             f"{'region grids (B, N, D)' if grid else 'pooled features (B, D)'}, the feature cache "
                             f"gives {tuple(batch['features'].shape)}: set data.init_args.feature_kind to "
                             f"{'grid' if grid else 'pooled'}")
        return batch["features"]

    @property
    def decode_options(self) -> DecodeOptions:
        """How validation, test and ``predict`` decode (greedy or beam, from the module's options)."""
        return DecodeOptions(beam_size=self.hparams.beam_size, max_len=self.hparams.max_len,
                             length_penalty=self.hparams.length_penalty)

    def decode(self, images: Tensor | None = None, features: Tensor | None = None) -> tuple[list[str], Tensor]:
        """Captions (as text) and their scores for an image batch (or its pooled features (B, D)), through the
        caption engine."""
        rows = caption_batch(self.captioner, self.vocab, self.decode_options, images=images, features=features)
        return [c for c, _ in rows], torch.tensor([s for _, s in rows])

    def evaluate_batch(self, batch: dict, stage: str) -> list[dict]:
        captions, _ = self.decode(features=self.features(batch))
        categories = batch.get("categories", [None] * len(captions))
        return [{"image_id": image_id, "caption": caption, "references": refs, "categories": cats}
                for image_id, caption, refs, cats in zip(batch["image_id"].tolist(), captions, batch["references"],
                                                         categories)]

    def merge_rows(self, rows: list[dict]) -> dict[int, dict]:
        """Each image once (the distributed sampler pads the last batch with repeated images), kept as
        :attr:`evaluation_rows` for the loggers' sample tables."""
        self.evaluation_rows = {row["image_id"]: row for row in rows}
        return self.evaluation_rows

    def evaluation_metrics(self, rows: dict[int, dict], stage: str) -> dict[str, float]:
        metrics = compute_caption_metrics({i: o["references"] for i, o in rows.items()},
                                          {i: o["caption"] for i, o in rows.items()})
        metrics.update(self._chair_metrics(rows))
        examples = list(rows.values())[: self.hparams.num_examples]
        rank_zero_info("\n".join(f"  [{o['image_id']}] {o['caption']!r}  (ref: {o['references'][0]!r})"
                                 for o in examples))
        return metrics

    def _chair_metrics(self, rows: dict[int, dict]) -> dict[str, float]:
        """CHAIRs/CHAIRi of the decoded captions; empty without a synonym table or instance annotations."""
        if self._chair is None or any(row["categories"] is None for row in rows.values()):
            return {}
        new = [i for i in rows if i not in self._chair_truth]  # references do not change: computed once an image
        self._chair_truth.update(self._chair.ground_truths(new, {i: rows[i]["categories"] for i in new},
                                                           {i: rows[i]["references"] for i in new}))
        result = self._chair.evaluate({i: row["caption"] for i, row in rows.items()}, self._chair_truth)
        for i, row in rows.items():  # e.g. a column of the W&B sample table
            row["hallucinated"] = [m.word for m in result.per_image[i].hallucinated]
        return {"CHAIRs": result.chair_s, "CHAIRi": result.chair_i}

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        captions, scores = self.decode(features=self.features(batch))
        return [{"image_id": i, "caption": c, "score": s}
                for i, c, s in zip(batch["image_id"].tolist(), captions, scores.tolist())]

    def configure_model(self) -> None:
        if self.hparams.compile and not getattr(self, "_compiled", False):
            options = self.hparams.compile if isinstance(self.hparams.compile, dict) else {}
            self.captioner.encoder.compile(**options)
            self.captioner.decoder.compile(**options)
            self._compiled = True

    checkpoint_key = KEY

    def checkpoint_meta(self) -> dict:
        return captioner_meta(self.captioner, self.vocab, self.hparams.image_size)
