"""LightningDataModules for COCO-format caption data (real COCO, and the built-in shapes scenes)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from torch.utils.data import DataLoader

from captioning.data.coco import (
    CaptionDataset,
    CaptionedImage,
    collate,
    read_caption_file,
    read_instance_categories,
)
from captioning.data.features import FeatureCache
from captioning.training.resumable import ResumableDataLoader, ResumableSampler
from captioning.training.stages import StagedDataModule
from captioning.metrics.chair import table_for
from captioning.data.vocab import Vocabulary
from captioning.core.runtime import worker_context


class CaptionDataModule(StagedDataModule):
    """Caption data in the official COCO layout: ``root/<captions pattern>`` and ``root/<images pattern>``.

    Args:
        root: Dataset folder.
        train_split: Split names substituted into the patterns; ``test_split``/``predict_split`` may
            repeat another split (COCO 2017 has no public test captions).
        val_split: Split used for validation.
        test_split: Split used by ``test``.
        predict_split: Split whose images ``predict`` captions.
        captions_pattern: Caption file of a split, relative to ``root``.
        images_pattern: Image folder of a split, relative to ``root``.
        image_size: Images are resized to this square size (the encoder normalizes them).
        batch_size: Training images per batch (each with all its captions).
        eval_batch_size: Images per validation/test/predict batch.
        num_workers: DataLoader worker processes.
        min_word_count: Training-caption words seen fewer times become ``<UNK>``.
        max_words: Training captions are cut to this many words.
        instances_pattern: Instance file of a split, relative to ``root``; where it exists, validation/test
            batches carry each image's object category names (``batch["categories"]``) for CHAIR.
        synonyms: CHAIR synonym table, linked into the model: a packaged table's name (``coco``: the reference
            table of LisaAnne/Hallucination; ``shapes``) or a file; ``auto`` (default) picks the packaged
            table that names every category of the validation instance file (no CHAIR without one);
            ``None``: no CHAIR. A name, not a path, is stored in checkpoints, so they stay portable.
        features: A feature cache folder (``captioning features``): batches then carry the cached encoder
            features instead of images, and the model checks that its encoder made them.
        feature_kind: What batches carry from the cache: ``pooled`` features (B, D), or the region ``grid``
            (B, N, D) that attention decoders read (a cache made with ``captioning features --grid``).
    """

    def __init__(self, root: str = "data/coco", train_split: str = "train2017", val_split: str = "val2017",
                 test_split: str = "val2017", predict_split: str | None = None,
                 captions_pattern: str = "annotations/captions_{split}.json", images_pattern: str = "{split}",
                 image_size: int = 224, batch_size: int = 64, eval_batch_size: int = 128, num_workers: int = 2,
                 min_word_count: int = 5, max_words: int = 20,
                 instances_pattern: str | None = "annotations/instances_{split}.json",
                 synonyms: str | None = "auto", features: str | None = None, feature_kind: str = "pooled") -> None:
        super().__init__()
        self.root = Path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split,
                       "predict": predict_split or test_split}
        self.captions_pattern, self.images_pattern = captions_pattern, images_pattern
        self.image_size, self.batch_size, self.eval_batch_size = image_size, batch_size, eval_batch_size
        self.num_workers, self.min_word_count, self.max_words = num_workers, min_word_count, max_words
        self.instances_pattern, self._synonyms = instances_pattern, synonyms
        self._images: dict[str, list[CaptionedImage]] = {}
        self._categories: dict[str, dict[int, list[str]] | None] = {}
        self.features = FeatureCache(features) if features else None
        self.feature_kind = feature_kind
        if self.features is not None and self.features.identity.get("image_size") != image_size:
            raise ValueError(f"feature cache {features} was made at image_size "
                             f"{self.features.identity.get('image_size')}, the data uses {image_size}")

    def ensure_data(self) -> None:
        """Makes sure the files exist (subclasses may generate them); real datasets are never downloaded."""

    def prepare_data(self) -> None:
        self.ensure_data()

    def split_files(self, stage: str) -> tuple[Path, Path | None, Path]:
        """The captions file, instances file (``None`` where absent) and image folder used for ``stage``."""
        self.ensure_data()
        split = self.splits[stage]
        instances = None if self.instances_pattern is None else self.root / self.instances_pattern.format(split=split)
        return (self.root / self.captions_pattern.format(split=split),
                instances if instances is not None and instances.is_file() else None,
                self.root / self.images_pattern.format(split=split))

    def images(self, stage: str) -> list[CaptionedImage]:
        """The captioned images of the split used for ``stage`` (train/val/test/predict), read once."""
        split = self.splits[stage]
        if split not in self._images:
            captions, _, image_dir = self.split_files(stage)
            self._images[split] = read_caption_file(captions, image_dir)
        return self._images[split]

    def categories(self, stage: str) -> dict[int, list[str]] | None:
        """Image id -> object category names from the split's instance file, or ``None`` without one."""
        split = self.splits[stage]
        if split not in self._categories:
            _, instances, _ = self.split_files(stage)
            self._categories[split] = None if instances is None else read_instance_categories(instances)
        return self._categories[split]

    @property
    def synonyms(self) -> str | None:
        """The CHAIR synonym table (a packaged table's name or a file), ``auto`` resolved; ``None``: no CHAIR."""
        if self._synonyms != "auto":
            return self._synonyms
        categories = self.categories("val")
        return None if categories is None else table_for({n for names in categories.values() for n in names})

    @cached_property
    def vocab(self) -> Vocabulary:
        """Vocabulary of the training captions (words seen at least ``min_word_count`` times)."""
        texts = (c for img in self.images("train") for c in img.captions)
        return Vocabulary.build(texts, min_count=self.min_word_count)

    @property
    def feature_identity(self) -> dict | None:
        """What made the cached features (linked to the model, which checks it), or ``None`` without a cache."""
        return None if self.features is None else self.features.identity

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _loader(self, stage: str) -> DataLoader:
        train = stage == "train"
        features = None if self.features is None else self.features.split(self.splits[stage])
        dataset = CaptionDataset(self.images(stage), self.vocab, self.image_size, with_tokens=train,
                                 max_words=self.max_words, categories=None if train else self.categories(stage),
                                 features=features, feature_kind=self.feature_kind)
        options = dict(num_workers=self.num_workers, collate_fn=collate, drop_last=False,
                       persistent_workers=self.num_workers > 0, pin_memory=False,
                       multiprocessing_context=worker_context(self.num_workers))
        if not train:  # under DDP, Lightning splits these with its own DistributedSampler
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **options)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # Each rank's share of a (seed, epoch) permutation; resumable mid-epoch from a checkpoint.
        return ResumableDataLoader(dataset, ResumableSampler(dataset, world, rank), self.batch_size, **options)


class ShapesDataModule(CaptionDataModule):
    """The built-in shapes scenes, generated (deterministically, once) into ``root`` on first use; CHAIR uses
    the shapes synonym table (:data:`captioning.data.shapes.SYNONYMS`).

    Args:
        root: Where the generated dataset is cached.
        num_train: Training images.
        num_val: Validation images.
        num_test: Test images.
        max_objects: At most this many shapes per scene.
        seed: Generator seed; the same seed always gives the same dataset.
        cooccur_pairs: Pairs of objects (``"shape"`` or ``"colour shape"``) whose co-occurrence is
            biased; empty = the unbiased dataset (see :mod:`captioning.data.shapes`).
        cooccur_rate: Probability that a train/val scene holding one member of a pair holds the
            other too; ``None`` = natural.
        cooccur_rate_test: The same for the test split (``0.0`` = never together).
        **kwargs: The :class:`CaptionDataModule` loader options.
    """

    def __init__(self, root: str = "data/shapes/build", num_train: int = 8000, num_val: int = 500,
                 num_test: int = 500, max_objects: int = 4, seed: int = 0,
                 cooccur_pairs: list[tuple[str, str]] | None = None, cooccur_rate: float | None = None,
                 cooccur_rate_test: float | None = None, image_size: int = 64,
                 batch_size: int = 64, eval_batch_size: int = 250, num_workers: int = 0,
                 min_word_count: int = 1, max_words: int = 20, features: str | None = None,
                 feature_kind: str = "pooled") -> None:
        super().__init__(root=root, train_split="train", val_split="val", test_split="test",
                         image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, min_word_count=min_word_count, max_words=max_words,
                         features=features, feature_kind=feature_kind)
        self.generator_args = dict(num_train=num_train, num_val=num_val, num_test=num_test,
                                   image_size=image_size, max_objects=max_objects, seed=seed,
                                   cooccur_pairs=tuple(map(tuple, cooccur_pairs or ())),
                                   cooccur_rate=cooccur_rate, cooccur_rate_test=cooccur_rate_test)
        from captioning.data.shapes import SYNONYMS

        self._synonyms = SYNONYMS  # shapes' own CHAIR table (shape words)

    def ensure_data(self) -> None:
        from captioning.data.shapes import generate_shapes

        generate_shapes(self.root, **self.generator_args)
