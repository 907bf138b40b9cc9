"""LightningDataModules for VQA: VQA v2 in the official layout and the built-in shapes VQA set."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from torch.utils.data import DataLoader

from captioning.data.vocab import AnswerVocab, Vocabulary
from captioning.data.vqa import VQADataset, VQAImage, collate_vqa, read_vqa_split
from captioning.training.stages import StagedDataModule
from captioning.core.runtime import worker_context


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
                          persistent_workers=self.num_workers > 0,
                          multiprocessing_context=worker_context(self.num_workers))


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
