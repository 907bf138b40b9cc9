"""VQA v2 data: the answer vocabulary with soft scores, the dataset and the LightningDataModules.

Soft targets: a candidate answer's target is exactly the official accuracy it would get on the question
(:func:`captioning.metrics.vqa.question_accuracy`, the leave-one-out mean of ``min(1, matches / 3)``), so
the classifier is trained on the quantity it is evaluated with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from captioning.data.coco import load_image
from captioning.data.stages import StagedDataModule
from captioning.data.vqa_files import check_questions_match, read_annotations, read_questions
from captioning.metrics.vqa import clean_whitespace, normalize_answer, question_accuracy
from captioning.vocab import Vocabulary


class AnswerVocab:
    """The classifier's answers: normalized training answers seen at least ``min_count`` times (at most
    ``top_k`` of them, most frequent first, ties alphabetical).

    Args:
        answers: The answers, in class-index order.
    """

    def __init__(self, answers: list[str]) -> None:
        self.itos = list(answers)
        self.stoi = {a: i for i, a in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos) or not self.itos:
            raise ValueError("the answer vocabulary must hold at least one answer, each once")

    @classmethod
    def build(cls, annotations: list[dict], min_count: int = 1, top_k: int | None = None) -> "AnswerVocab":
        """Counts every annotator's normalized answer over ``annotations``."""
        raw = Counter(a["answer"] for ann in annotations for a in ann["answers"])
        counts: Counter[str] = Counter()
        for answer, n in raw.items():  # normalize each distinct string once
            counts[normalize_answer(answer)] += n
        kept = sorted((a for a, c in counts.items() if c >= min_count and a), key=lambda a: (-counts[a], a))
        if not kept:
            raise ValueError(f"no answer is given at least {min_count} times in the training annotations")
        return cls(kept[:top_k] if top_k else kept)

    def __len__(self) -> int:
        return len(self.itos)

    def targets(self, gt_answers: list[dict]) -> dict[int, float]:
        """Class index → official accuracy, for every vocabulary answer that scores above zero."""
        forms = {clean_whitespace(a["answer"]) for a in gt_answers}
        forms |= {normalize_answer(a) for a in forms}
        scores = {self.stoi[f]: question_accuracy(f, gt_answers) for f in forms if f in self.stoi}
        return {i: s for i, s in scores.items() if s > 0}

    def to_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "AnswerVocab":
        return cls(list(data["itos"]))


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


class _Collate:
    """Picklable collate function bound to the number of answers (for worker processes)."""

    def __init__(self, num_answers: int) -> None:
        self.num_answers = num_answers

    def __call__(self, items: list[dict]) -> dict:
        return collate_vqa(items, self.num_answers)


class VQADataModule(StagedDataModule):
    """VQA v2 data in the official layout (questions and annotations JSON, COCO images).

    Args:
        root: Dataset folder.
        train_split: Split names substituted into the patterns.
        val_split: Split used for validation.
        test_split: Split used by ``test`` (it needs annotations).
        predict_split: Split answered by ``predict`` (annotations not needed, e.g. ``test-dev2015``).
        questions_pattern: Questions file of a split, relative to ``root``.
        annotations_pattern: Annotations file of a split, relative to ``root``.
        images_pattern: Image folder of a split, relative to ``root``.
        image_file: File name of an image in its folder, formatted with ``split`` and ``image_id``.
        image_split: Image folder split of each question split when they differ (test-dev2015 → test2015).
        image_size: Images are resized to this square size.
        batch_size: Training images per batch (each with all its questions).
        eval_batch_size: Images per validation/test/predict batch.
        num_workers: DataLoader worker processes.
        min_word_count: Training-question words seen fewer times become ``<UNK>``.
        max_words: Questions are cut to this many words.
        min_answer_count: Answers given fewer times in training are not classes.
        top_k_answers: Keep at most this many answers (VQA v2 baselines use 1000–3129); ``None`` keeps all.
    """

    def __init__(self, root: str = "data/vqav2", train_split: str = "train2014", val_split: str = "val2014",
                 test_split: str = "val2014", predict_split: str = "test-dev2015",
                 questions_pattern: str = "v2_OpenEnded_mscoco_{split}_questions.json",
                 annotations_pattern: str = "v2_mscoco_{split}_annotations.json", images_pattern: str = "{split}",
                 image_file: str = "COCO_{split}_{image_id:012d}.jpg",
                 image_split: dict[str, str] | None = None, image_size: int = 224, batch_size: int = 64,
                 eval_batch_size: int = 128, num_workers: int = 2, min_word_count: int = 1, max_words: int = 20,
                 min_answer_count: int = 9, top_k_answers: int | None = 3129) -> None:
        super().__init__()
        self.root = Path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split, "predict": predict_split}
        self.patterns = {"questions": questions_pattern, "annotations": annotations_pattern,
                         "images": images_pattern, "image_file": image_file}
        self.image_split = {"test-dev2015": "test2015", **(image_split or {})}
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.num_workers, self.min_word_count, self.max_words = num_workers, min_word_count, max_words
        self.min_answer_count, self.top_k_answers = min_answer_count, top_k_answers
        self._images: dict[tuple[str, bool], list[VQAImage]] = {}

    def ensure_data(self) -> None:
        """Makes sure the files exist (the shapes subclass generates them); VQA v2 is never downloaded."""

    def prepare_data(self) -> None:
        self.ensure_data()

    def files(self, split: str) -> tuple[Path, Path]:
        """The questions and annotations file of ``split``."""
        return (self.root / self.patterns["questions"].format(split=split),
                self.root / self.patterns["annotations"].format(split=split))

    def images(self, stage: str) -> list[VQAImage]:
        """The images and questions of the split used for ``stage`` (annotated except for predict)."""
        split, annotated = self.splits[stage], stage != "predict"
        if (split, annotated) not in self._images:
            self.ensure_data()
            questions, annotations = self.files(split)
            image_split = self.image_split.get(split, split)
            self._images[split, annotated] = read_vqa_split(
                questions, annotations if annotated else None,
                self.root / self.patterns["images"].format(split=image_split),
                self.patterns["image_file"].replace("{split}", image_split))
        return self._images[split, annotated]

    def annotations(self, stage: str) -> list[dict]:
        """The annotation records of a stage's split, in image then question order."""
        return [a for img in self.images(stage) for a in img.annotations or ()]

    @cached_property
    def vocab(self) -> Vocabulary:
        """Question vocabulary of the training questions (the captioning vocabulary tooling)."""
        texts = (q for img in self.images("train") for q in img.questions)
        return Vocabulary.build(texts, min_count=self.min_word_count)

    @cached_property
    def answer_vocab(self) -> AnswerVocab:
        """Answer classes from the training annotations."""
        return AnswerVocab.build(self.annotations("train"), self.min_answer_count, self.top_k_answers)

    def _loader(self, stage: str) -> DataLoader:
        train = stage == "train"
        dataset = VQADataset(self.images(stage), self.vocab, self.answer_vocab, self.image_size, self.max_words)
        return DataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          num_workers=self.num_workers, collate_fn=_Collate(len(self.answer_vocab)),
                          persistent_workers=self.num_workers > 0)


class ShapesVQADataModule(VQADataModule):
    """The built-in shapes VQA set: scenes and questions generated (deterministically, once) into ``root``.

    Args:
        root: Where the shapes scenes (shared with captioning) and ``vqa/`` files are cached.
        num_train: Training scenes.
        num_val: Validation scenes.
        num_test: Test scenes.
        max_objects: At most this many shapes per scene.
        seed: Seed of scenes and questions.
        questions_per_image: Questions asked about each scene.
        disagreement: Share of questions on which some annotators disagree.
        **kwargs: The loader options of :class:`VQADataModule`.
    """

    def __init__(self, root: str = "data/shapes/build", num_train: int = 8000, num_val: int = 500,
                 num_test: int = 500, max_objects: int = 4, seed: int = 0, questions_per_image: int = 6,
                 disagreement: float = 0.3, image_size: int = 64, batch_size: int = 64,
                 eval_batch_size: int = 250, num_workers: int = 0, min_answer_count: int = 1) -> None:
        from captioning.data.shapes_vqa import ANNOTATIONS_FILE, QUESTIONS_FILE

        super().__init__(root=root, train_split="train", val_split="val", test_split="test",
                         predict_split="test", questions_pattern=QUESTIONS_FILE,
                         annotations_pattern=ANNOTATIONS_FILE, image_file="{image_id:012d}.png",
                         image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, min_answer_count=min_answer_count, top_k_answers=None)
        self.generator_args = dict(num_train=num_train, num_val=num_val, num_test=num_test,
                                   image_size=image_size, max_objects=max_objects, seed=seed)
        self.vqa_args = dict(questions_per_image=questions_per_image, disagreement=disagreement, seed=seed)

    def ensure_data(self) -> None:
        from captioning.data.shapes import generate_shapes
        from captioning.data.shapes_vqa import generate_shapes_vqa

        generate_shapes_vqa(generate_shapes(self.root, **self.generator_args), **self.vqa_args)
