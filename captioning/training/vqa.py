"""The VQA training module: soft-score loss, official accuracy on validation/test, answers for predict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from captioning.inference.checkpoint import VQA_KEY, vqa_meta
from captioning.data.vocab import AnswerVocab
from captioning.training.base import EvaluatedModule
from captioning.metrics.vqa import vqa_accuracy
from captioning.models.vqa import FusionFactory, QuestionEncoderFactory, build_vqa_model
from captioning.data.vocab import Vocabulary



class VQAModule(EvaluatedModule):
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
        super().__init__(optimizer, lr_scheduler)
        if vocab is None or answer_vocab is None:
            raise ValueError("VQAModule needs 'vocab' and 'answer_vocab' (linked from the data module)")
        self.save_hyperparameters(ignore=["encoder", "question_encoder", "fusion", "vocab", "answer_vocab",
                                          "optimizer", "lr_scheduler"])
        self.vocab, self.answer_vocab = vocab, answer_vocab
        self.model = build_vqa_model(encoder, question_encoder, fusion, len(vocab), len(answer_vocab),
                                     image_size, classifier_hidden, dropout)
        self._annotations: dict[int, dict] = {}  # question id -> annotation, of the split being evaluated
        self._evaluated: list[dict] = []  # the annotations of the questions answered, at an epoch's end

    def forward(self, batch: dict) -> Tensor:
        return self.model(batch["image"], batch["tokens"], batch["lengths"], batch["owner"])  # (Q, A)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self(batch)  # (Q, A)
        targets = batch["targets"]  # (Q, A)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets) * targets.size(1)
        auxiliary = self.model.take_auxiliary_loss()  # e.g. the word relations' grounding objective
        if auxiliary is not None:
            self.log("train/auxiliary_loss", auxiliary, batch_size=targets.size(0))
            loss = loss + auxiliary
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=targets.size(0))
        return loss

    def answer(self, batch: dict) -> dict[int, str]:
        """Arg-max answers of a batch, by question id."""
        best = self(batch).argmax(dim=-1).tolist()  # (Q,)
        return {qid: self.answer_vocab.itos[i] for qid, i in zip(batch["question_id"], best)}

    def evaluate_batch(self, batch: dict, stage: str) -> list[tuple[int, str]]:
        if not self._annotations:
            self._annotations = {a["question_id"]: a for a in self.trainer.datamodule.annotations(stage)}
        return list(self.answer(batch).items())

    def merge_rows(self, rows: list[tuple[int, str]]) -> dict[int, str]:
        answers = dict(rows)
        self._evaluated, self._annotations = [self._annotations[q] for q in self._annotations if q in answers], {}
        return answers if self._evaluated else {}

    def evaluation_metrics(self, answers: dict[int, str], stage: str) -> dict[str, float]:
        acc = vqa_accuracy(self._evaluated, answers)
        rank_zero_info(f"{stage} VQA accuracy {acc['overall']:.2f} ("
                       + ", ".join(f"{k} {v:.2f}" for k, v in sorted(acc["perAnswerType"].items())) + ")")
        return {"accuracy": acc["overall"], **{f"accuracy_{k}": v for k, v in acc["perAnswerType"].items()}}

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return [{"question_id": q, "answer": a} for q, a in self.answer(batch).items()]

    checkpoint_key = VQA_KEY

    def checkpoint_meta(self) -> dict:
        return vqa_meta(self.model, self.vocab, self.answer_vocab, self.hparams.image_size)
