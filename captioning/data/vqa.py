"""VQA v2 data: a split's questions and answers per image, the dataset and its collate function (the answer
vocabulary with soft scores is :class:`captioning.data.vocab.AnswerVocab`; the LightningDataModules are in
:mod:`captioning.training.vqa_data`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captioning.data.images import load_image
from captioning.data.vqa_files import check_questions_match, read_annotations, read_questions
from captioning.data.vocab import AnswerVocab, Vocabulary


@dataclass(frozen=True)
class VQAImage:
    """One image with all its questions (and, where annotated, their answer records and types)."""

    image_id: int
    path: Path
    question_ids: tuple[int, ...]
    questions: tuple[str, ...]
    annotations: tuple[dict, ...] | None


def read_vqa_split(questions_file: Path, annotations_file: Path | None, image_dir: Path,
                   image_file: str) -> list[VQAImage]:
    """Groups a split's questions (and annotations, if the file is given) by image, ordered by image id."""
    questions = read_questions(questions_file)
    annotations = None
    if annotations_file is not None:
        annotations = {a["question_id"]: a for a in read_annotations(annotations_file)}
        check_questions_match(questions, list(annotations.values()), questions_file, annotations_file)
    by_image: dict[int, list[dict]] = {}
    for q in questions:
        by_image.setdefault(q["image_id"], []).append(q)
    out = []
    for image_id in sorted(by_image):
        qs = by_image[image_id]
        anns = None if annotations is None else tuple(annotations[q["question_id"]] for q in qs
                                                      if q["question_id"] in annotations)
        if anns is not None and len(anns) != len(qs):
            raise ValueError(f"{annotations_file}: some questions of image {image_id} have no annotation")
        out.append(VQAImage(image_id, image_dir / image_file.format(image_id=image_id),
                            tuple(q["question_id"] for q in qs), tuple(q["question"] for q in qs), anns))
    return out


def _answers_key(answers: list[dict]) -> tuple | None:
    try:
        return tuple(tuple(sorted(r.items())) for r in answers)
    except TypeError:  # an unhashable extra field: no caching
        return None


class VQADataset(Dataset):
    """One item per image: the image, its questions' token ids and, when annotated, their soft targets.

    Token ids and targets are computed once, when the dataset is made (equal questions and equal answer
    lists are computed once).
    """

    def __init__(self, images: list[VQAImage], vocab: Vocabulary, answers: AnswerVocab, image_size: int,
                 max_words: int = 20) -> None:
        self.images, self.image_size = images, image_size
        encoded: dict[str, Tensor] = {}
        for q in {q for img in images for q in img.questions}:
            encoded[q] = torch.tensor(vocab.encode(q)[: max_words + 2])  # <START> words <END>, cut
        self.tokens = [[encoded[q] for q in img.questions] for img in images]
        cache: dict[tuple, dict[int, float]] = {}
        self.targets = [None if img.annotations is None else
                        [self._targets(answers, a["answers"], cache) for a in img.annotations] for img in images]

    @staticmethod
    def _targets(answers: AnswerVocab, gt: list[dict], cache: dict) -> dict[int, float]:
        key = _answers_key(gt)
        if key is None:
            return answers.targets(gt)
        if key not in cache:
            cache[key] = answers.targets(gt)
        return cache[key]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        img = self.images[idx]
        item = {"image": load_image(img.path, self.image_size), "image_id": img.image_id,
                "question_id": list(img.question_ids), "tokens": self.tokens[idx]}
        if self.targets[idx] is not None:
            item["targets"] = self.targets[idx]
        return item


def collate_vqa(items: list[dict], num_answers: int) -> dict:
    """Stacks images; questions of all images are padded into (Q, T) with ``owner`` (Q,) giving each
    question's image, ``lengths`` (Q,) and, when annotated, dense soft ``targets`` (Q, A)."""
    tokens = [t for it in items for t in it["tokens"]]
    batch = {"image": torch.stack([it["image"] for it in items]),  # (B, 3, S, S)
             "tokens": torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True,
                                                       padding_value=Vocabulary.pad_id),  # (Q, T)
             "lengths": torch.tensor([len(t) for t in tokens]),  # (Q,)
             "owner": torch.tensor([b for b, it in enumerate(items) for _ in it["tokens"]]),  # (Q,)
             "question_id": [q for it in items for q in it["question_id"]]}
    if "targets" in items[0]:
        targets = torch.zeros(len(tokens), num_answers)  # (Q, A)
        for row, scores in enumerate(s for it in items for s in it["targets"]):
            for col, score in scores.items():
                targets[row, col] = score
        batch["targets"] = targets
    return batch

