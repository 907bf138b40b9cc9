"""The captioner: an image encoder and a decoder joined by the pooled feature ``v`` (or the region grid, for a
decoder that attends)."""

from __future__ import annotations

import functools
from typing import Any, Callable

from torch import Tensor, nn

from captioning.models.decoder import DECODERS
from captioning.models.decoding import Captions, beam_search, greedy
from captioning.models.encoders import build_encoder


class Captioner(nn.Module):
    """Image → ``v`` → word logits; decoding itself lives in :mod:`captioning.models.decoding`.

    Args:
        encoder: Maps images (B, 3, H, W) in [0, 1] to ``(v, grid)``.
        decoder: Has ``forward(v, tokens)``, ``init_state(v)`` and ``step(tokens, state)``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, images: Tensor) -> Tensor:
        """What the decoder reads: pooled features (B, D), or the region grid (B, N, D) for a decoder that
        attends (``needs_grid``)."""
        if getattr(self.decoder, "needs_grid", False):
            return self.encoder(images, return_grid=True)[1]
        return self.encoder(images)[0]

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced next-token logits (B, T, V) for input tokens (B, T)."""
        return self.decoder(self.encode(images), tokens)

    def generate(self, images: Tensor, max_len: int = 20, beam_size: int = 1,
                 length_penalty: float = 0.0) -> Captions:
        """Greedy (``beam_size`` 1) or beam-search captions, tokens (B, T) and scores (B,)."""
        return self.generate_from_features(self.encode(images), max_len, beam_size, length_penalty)

    def generate_from_features(self, v: Tensor, max_len: int = 20, beam_size: int = 1,
                               length_penalty: float = 0.0) -> Captions:
        """:meth:`generate` from pooled features (B, D) already computed (e.g. a feature cache)."""
        if beam_size == 1:
            return greedy(self.decoder, v, max_len)
        out = beam_search(self.decoder, v, beam_size, max_len, alpha=length_penalty)
        return Captions(out.tokens[:, 0], out.scores[:, 0])


def create_captioner(meta: dict, from_checkpoint: bool = True) -> Captioner:
    """A captioner (untrained weights) from the plain-data description checkpoints carry: ``meta["encoder"]``
    and ``meta["decoder"]``, each naming its registered component and options. A decoder without a ``name``
    (checkpoints written before decoders were registered) is the ``rnn`` decoder.

    Args:
        meta: The checkpoint's ``"captioning"`` entry (see :func:`captioning.inference.checkpoint.captioner_meta`).
        from_checkpoint: Skip loading pretrained encoder weights (the checkpoint's state dict holds them).
    """
    return Captioner(build_encoder(meta["encoder"], from_checkpoint=from_checkpoint),
                     DECODERS.build(meta["decoder"], default="rnn"))


def reads_grid(decoder: Any) -> bool:
    """Whether a decoder, its class, or a factory of it (``functools.partial`` of the class, as configs build
    them, with its options) attends over the region grid instead of reading the pooled ``v``."""
    keywords: dict = {}
    while isinstance(decoder, functools.partial):
        keywords = {**decoder.keywords, **keywords}
        decoder = next((a for a in decoder.args if isinstance(a, type)), decoder.func)
    option = getattr(decoder, "grid_option", None)  # a decoder class whose option decides (block decoders' grid)
    if isinstance(decoder, type) and option in keywords:
        return bool(keywords[option])
    return bool(getattr(decoder, "needs_grid", False))


def build_captioner(encoder: nn.Module, decoder_factory: Callable[[int, int], nn.Module], vocab_size: int) -> Captioner:
    """A captioner from an encoder and a decoder factory ``(vocab_size, feature_dim) -> decoder``; the feature
    width is the encoder's grid width for a decoder that attends, else the pooled ``v``'s."""
    width = encoder.grid_dim if reads_grid(decoder_factory) else encoder.out_dim
    return Captioner(encoder, decoder_factory(vocab_size, width))
