"""The VQA training module: soft-score loss, official accuracy on validation/test, answers for predict."""

from __future__ import annotations

import pytorch_lightning as L
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from captioning.inference.checkpoint import VQA_KEY
from captioning.data.vocab import AnswerVocab
from captioning.training.distributed import gather_objects
from captioning.training.schedules import configure_optimization
from captioning.metrics.vqa import vqa_accuracy
from captioning.models.vqa import FusionFactory, QuestionEncoderFactory, build_vqa_model, vqa_model_meta
from captioning.data.vocab import Vocabulary



class VQAModule(L.LightningModule):
    """Trains a :class:`~captioning.models.vqa.VQAModel` on soft scores and evaluates it officially.

    The loss is binary cross-entropy between the logits and the soft targets (each answer's official
    accuracy on the question), summed over answers and averaged over questions, as in the VQA v2 baselines
    (Teney et al. 2018). Validation and test report the official accuracy (percent) overall and per answer
    type of the arg-max answers, on all questions of the split (gathered across ranks).

    Args:
        encoder: Image encoder (e.g. ``captioning.models.SmallCNN``).
        question_encoder: Question encoder class and options; built here with the question vocabulary size.
        fusion: Fusion class and options; built here with the question, pooled and grid widths.
        vocab: Question vocabulary, linked from the data module.
        answer_vocab: Answer classes, linked from the data module.
        optimizer: Optimizer class and options.
        lr_scheduler: Optional scheduler (see :class:`captioning.training.captioning.CaptioningModule`).
        image_size: Linked from the data module (the grid width is found with a dummy image of this size).
        classifier_hidden: Width of the classifier's hidden layer.
        dropout: Classifier dropout.
    """

    def __init__(self, encoder: nn.Module, question_encoder: QuestionEncoderFactory, fusion: FusionFactory,
                 vocab: Vocabulary | None = None, answer_vocab: AnswerVocab | None = None,
                 optimizer: OptimizerCallable = torch.optim.Adam, lr_scheduler: LRSchedulerCallable | None = None,
                 image_size: int = 224, classifier_hidden: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if vocab is None or answer_vocab is None:
            raise ValueError("VQAModule needs 'vocab' and 'answer_vocab' (linked from the data module)")
        self.save_hyperparameters(ignore=["encoder", "question_encoder", "fusion", "vocab", "answer_vocab",
                                          "optimizer", "lr_scheduler"])
        self.vocab, self.answer_vocab = vocab, answer_vocab
        self.model = build_vqa_model(encoder, question_encoder, fusion, len(vocab), len(answer_vocab),
                                     image_size, classifier_hidden, dropout)
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self._answers: dict[int, str] = {}
        self._annotations: dict[int, dict] = {}

    def forward(self, batch: dict) -> Tensor:
        return self.model(batch["image"], batch["tokens"], batch["lengths"], batch["owner"])  # (Q, A)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self(batch)  # (Q, A)
        targets = batch["targets"]  # (Q, A)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets) * targets.size(1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at global step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=targets.size(0))
        return loss

    def answer(self, batch: dict) -> dict[int, str]:
        """Arg-max answers of a batch, by question id."""
        best = self(batch).argmax(dim=-1).tolist()  # (Q,)
        return {qid: self.answer_vocab.itos[i] for qid, i in zip(batch["question_id"], best)}

    def _evaluate_step(self, batch: dict, stage: str) -> None:
        self._answers.update(self.answer(batch))
        if not self._annotations:
            self._annotations = {a["question_id"]: a for a in self.trainer.datamodule.annotations(stage)}

    def _evaluate_epoch_end(self, prefix: str) -> None:
        answers = dict(gather_objects(list(self._answers.items()), self.trainer.world_size))
        annotations = [self._annotations[q] for q in self._annotations if q in answers]
        self._answers, self._annotations = {}, {}
        if not annotations or self.trainer.sanity_checking:
            return
        acc = vqa_accuracy(annotations, answers)
        metrics = {"accuracy": acc["overall"], **{f"accuracy_{k}": v for k, v in acc["perAnswerType"].items()}}
        self.log_dict({f"{prefix}/{k.replace('/', '_')}": float(v) for k, v in metrics.items()},
                      rank_zero_only=False)
        rank_zero_info(f"{prefix} VQA accuracy {acc['overall']:.2f} ("
                       + ", ".join(f"{k} {v:.2f}" for k, v in sorted(acc["perAnswerType"].items())) + ")")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluate_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluate_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return [{"question_id": q, "answer": a} for q, a in self.answer(batch).items()]

    def configure_optimizers(self):
        return configure_optimization(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[VQA_KEY] = {"format": 2, "vocab": self.vocab.to_dict(), "answers": self.answer_vocab.to_dict(),
                           "image_size": self.hparams.image_size, **vqa_model_meta(self.model)}
