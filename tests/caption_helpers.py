"""A tiny untrained captioner checkpoint for the captioning-tool tests (no training run needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from captioning.inference.checkpoint import save_captioner
from captioning.models import Captioner, RNNDecoder, SmallCNN
from captioning.models.decoder import DECODERS
from captioning.data.vocab import Vocabulary

WORDS = "a red blue green circle square triangle left right of the above below".split()


def tiny_checkpoint(path: Path, image_size: int = 32, seed: int = 0, decoder: str = "rnn") -> Path:
    """A small CNN + GRU (or a registered attention decoder over its 2×2 grid) captioner with random weights
    over a 13-word vocabulary."""
    torch.manual_seed(seed)
    encoder = SmallCNN(channels=(8, 16), out_dim=16, grid_size=2)
    vocab = Vocabulary.build([" ".join(WORDS)])
    if decoder == "rnn":
        model = Captioner(encoder, RNNDecoder(len(vocab), encoder.out_dim, embed_dim=8, hidden_dim=16, cell="gru"))
    else:
        model = Captioner(encoder, DECODERS.build(dict(name=decoder, vocab_size=len(vocab),
                                                       feature_dim=encoder.grid_dim, embed_dim=8, hidden_dim=16,
                                                       attention_dim=8)))
    return save_captioner(path, model.eval(), vocab, image_size)
