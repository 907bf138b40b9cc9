"""The caption engine: decoding options and one batched call (:func:`caption_batch`, images → encoder →
decoding → text, any device) used by ``captioning caption`` (through Lightning's predict loop), LightningCLI
``predict``/validation/test, the main job (:func:`caption_files`) and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from captioning.inference.checkpoint import LoadedCaptioner
from captioning.data.images import ImageRef, image_loader
from captioning.models.decoding import END, PAD, START, Captions, sample
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
        attention: Also return each word's attention map (attention decoders only; see :func:`attention_maps`).
    """

    beam_size: int = 1
    max_len: int = 20
    length_penalty: float = 0.0
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0
    attention: bool = False

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.max_len < 1:
            raise ValueError(f"beam_size and max_len must be at least 1, got {self.beam_size} and {self.max_len}")


def captions_text(vocab: Vocabulary, out: Captions) -> list[tuple[str, float]]:
    """``(text, score)`` of each decoded caption: the one place token ids become words."""
    return [(vocab.decode(t), s) for t, s in zip(out.tokens.tolist(), out.scores.float().tolist())]


@torch.no_grad()
def decode_batch(model: Captioner, options: DecodeOptions, images: Tensor | None = None,
                 features: Tensor | None = None, batch_key: int = 0) -> tuple[Captions, Tensor]:
    """Decoded token ids and scores of a batch, and the features the decoder read (pooled (B, D) or a region
    grid (B, N, D)); see :func:`caption_batch`."""
    v = model.encode(images) if features is None else features
    if options.sample:
        generator = torch.Generator(device=v.device).manual_seed(options.seed * 1_000_003 + batch_key)
        out = sample(model.decoder, v, options.max_len, options.temperature, options.top_k, generator=generator)
    else:
        out = model.generate_from_features(v, options.max_len, options.beam_size, options.length_penalty)
    return out, v


def caption_batch(model: Captioner, vocab: Vocabulary, options: DecodeOptions, images: Tensor | None = None,
                  features: Tensor | None = None, batch_key: int = 0) -> list[tuple[str, float]]:
    """The caption engine: images (or their features) → decoding → ``(caption, score)`` per image.

    Serves ``captioning caption``, LightningCLI ``predict``, validation and test, the main job and the
    benchmark.

    Args:
        model: The captioner (in eval mode, on the images' device).
        vocab: Its vocabulary.
        options: Decoding options.
        images: RGB batch in [0, 1], (B, 3, S, S); or
        features: What the decoder reads, already computed (pooled (B, D), e.g. from a feature cache).
        batch_key: Mixed into the sampling seed (e.g. the batch's first image index), so a batch's samples
            do not depend on the batches before it.
    """
    return captions_text(vocab, decode_batch(model, options, images, features, batch_key)[0])


def has_attention_maps(decoder: nn.Module) -> bool:
    """Whether ``decoder`` attends over image regions, so :func:`attention_maps` can say where it looked: the
    attention decoders, and the block decoders with ``grid: true`` (the pooled block decoders have ``attend``
    too, but no regions)."""
    return bool(getattr(decoder, "needs_grid", False)) and hasattr(decoder, "attend")


@torch.no_grad()
def attention_maps(model: Captioner, grid: Tensor, out: Captions) -> list[list[list[float]]]:
    """Where an attention decoder looked for each word of its decoded captions: per image, one list of region
    weights (N, row-major over the grid) per word (``<END>`` excluded).

    The decoded words are fed back through the decoder's teacher-forced pass, which reproduces decoding's
    hidden states exactly, so each word gets the weights of the step that chose it.

    Raises:
        ValueError: if the decoder does not attend over regions.
    """
    if not has_attention_maps(model.decoder):
        raise ValueError(f"the {model.decoder.config.get('name', 'rnn')} decoder has no attention maps "
                         "(an attention decoder such as updown, or a block decoder with grid: true, has)")
    tokens = out.tokens  # (B, T): words, <END>, <PAD>…
    inputs = torch.cat([torch.full_like(tokens[:, :1], START), tokens[:, :-1]], dim=1)  # (B, T)
    _, alphas = model.decoder.attend(grid, inputs)  # (B, T, N)
    words = ((tokens != END) & (tokens != PAD)).cumprod(dim=1).sum(dim=1).tolist()  # words before <END>
    return [alphas[b, :n].float().tolist() for b, n in enumerate(words)]


@torch.no_grad()
def caption_files(loaded: LoadedCaptioner, paths: Sequence[str | Path], batch_size: int = 64,
                  beam_size: int = 1, max_len: int = 20, length_penalty: float = 0.0,
                  num_workers: int = 0, device: str = "cpu",
                  maps: list[list[list[float]]] | None = None) -> list[tuple[str, float]]:
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
        maps: A list that receives each image's per-word attention maps (:func:`attention_maps`; attention
            decoders only), in path order.

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
        out, features = decode_batch(model, options, images=batch["image"].to(device))
        results += captions_text(loaded.vocab, out)
        if maps is not None:
            maps += attention_maps(model, features, out)
    return results
