"""The caption engine: decoding options and one batched call (:func:`caption_batch`, images → encoder →
decoding → text, any device) used by ``captioning caption`` (through Lightning's predict loop), LightningCLI
``predict``/validation/test, the main job (:func:`caption_files`) and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from captioning.inference.checkpoint import LoadedCaptioner
from captioning.data.images import ImageRef, image_loader
from captioning.models.decoding import Captions, sample
from captioning.models.captioner import Captioner
from captioning.data.vocab import Vocabulary


@dataclass(frozen=True)
class DecodeOptions:
    """How captions are decoded.

    Attributes:
        beam_size: 1 decodes greedily; larger runs batched beam search (both deterministic).
        max_len: Maximum words per caption.
        length_penalty: Length-penalty exponent for beam search.
        sample: Sample words instead (``beam_size`` is then ignored); reproducible through ``seed``.
        temperature: Sampling temperature.
        top_k: Sample among the ``top_k`` most probable words (0: all).
        seed: Seed of the sampling generator (combined with each batch's first image index).
    """

    beam_size: int = 1
    max_len: int = 20
    length_penalty: float = 0.0
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.max_len < 1:
            raise ValueError(f"beam_size and max_len must be at least 1, got {self.beam_size} and {self.max_len}")


def captions_text(vocab: Vocabulary, out: Captions) -> list[tuple[str, float]]:
    """``(text, score)`` of each decoded caption: the one place token ids become words."""
    return [(vocab.decode(t), s) for t, s in zip(out.tokens.tolist(), out.scores.float().tolist())]


@torch.no_grad()
def caption_batch(model: Captioner, vocab: Vocabulary, options: DecodeOptions, images: Tensor | None = None,
                  features: Tensor | None = None, batch_key: int = 0) -> list[tuple[str, float]]:
    """The caption engine: images (or their pooled features) → decoding → ``(caption, score)`` per image.

    Serves ``captioning caption``, LightningCLI ``predict``, validation and test, the main job and the
    benchmark.

    Args:
        model: The captioner (in eval mode, on the images' device).
        vocab: Its vocabulary.
        options: Decoding options.
        images: RGB batch in [0, 1], (B, 3, S, S); or
        features: Pooled features (B, D) already computed (e.g. from a feature cache).
        batch_key: Mixed into the sampling seed (e.g. the batch's first image index), so a batch's samples
            do not depend on the batches before it.
    """
    v = model.encode(images) if features is None else features  # (B, D)
    if options.sample:
        generator = torch.Generator(device=v.device).manual_seed(options.seed * 1_000_003 + batch_key)
        out = sample(model.decoder, v, options.max_len, options.temperature, options.top_k, generator=generator)
    else:
        out = model.generate_from_features(v, options.max_len, options.beam_size, options.length_penalty)
    return captions_text(vocab, out)


@torch.no_grad()
def caption_files(loaded: LoadedCaptioner, paths: Sequence[str | Path], batch_size: int = 64,
                  beam_size: int = 1, max_len: int = 20, length_penalty: float = 0.0,
                  num_workers: int = 0, device: str = "cpu") -> list[tuple[str, float]]:
    """Captions image files in batches, in order, in this process (``captioning caption`` is the tool for
    large collections: workers, resuming, error lists, several devices).

    Args:
        loaded: A captioner from :func:`captioning.inference.checkpoint.load_captioner`.
        paths: Image files.
        batch_size: Images per forward pass.
        beam_size: 1 decodes greedily; larger runs batched beam search.
        max_len: Maximum words per caption.
        length_penalty: Length-penalty exponent for beam search.
        num_workers: DataLoader worker processes reading images.
        device: Where the model runs.

    Returns:
        ``(caption, score)`` per path.

    Raises:
        ValueError: naming the first image that cannot be read.
    """
    model = loaded.model.to(device).eval()
    options = DecodeOptions(beam_size=beam_size, max_len=max_len, length_penalty=length_penalty)
    refs = [ImageRef(str(p), Path(p)) for p in paths]
    loader = image_loader(refs, loaded.image_size, batch_size, num_workers)
    results: list[tuple[str, float]] = []
    for batch in loader:
        if batch["failed"]:
            ref, reason = batch["failed"][0]
            raise ValueError(f"cannot caption image file {ref.path}: {reason}")
        results += caption_batch(model, loaded.vocab, options, images=batch["image"].to(device))
    return results
