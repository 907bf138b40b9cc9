"""Captioning images with a trained captioner: the decoding options and one batched call used by
``captioning caption`` (through Lightning's predict loop) and by scripts (:func:`caption_files`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from captioning.inference.checkpoint import LoadedCaptioner
from captioning.data.images import ImageRef, image_loader
from captioning.models.decoding import sample
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


@torch.no_grad()
def generate_captions(model: Captioner, vocab: Vocabulary, images: Tensor, options: DecodeOptions,
                      batch_key: int = 0) -> list[tuple[str, float]]:
    """``(caption, score)`` for each image of a batch (B, 3, S, S).

    Args:
        model: The captioner (in eval mode, on the images' device).
        vocab: Its vocabulary.
        images: RGB batch in [0, 1].
        options: Decoding options.
        batch_key: Mixed into the sampling seed (e.g. the batch's first image index), so a batch's samples
            do not depend on the batches before it.
    """
    if options.sample:
        generator = torch.Generator(device=images.device).manual_seed(options.seed * 1_000_003 + batch_key)
        out = sample(model.decoder, model.encode(images), options.max_len, options.temperature, options.top_k,
                     generator=generator)
    else:
        out = model.generate(images, options.max_len, options.beam_size, options.length_penalty)
    return [(vocab.decode(t), s) for t, s in zip(out.tokens.tolist(), out.scores.float().tolist())]


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
        results += generate_captions(model, loaded.vocab, batch["image"].to(device), options)
    return results
