"""Captioning image files with a model loaded from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from captioning.checkpoint import LoadedCaptioner
from captioning.data.coco import load_image


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[str | Path], image_size: int) -> None:
        self.paths, self.image_size = list(paths), image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> torch.Tensor:
        return load_image(self.paths[idx], self.image_size)  # (3, S, S)


@torch.no_grad()
def caption_files(loaded: LoadedCaptioner, paths: Sequence[str | Path], batch_size: int = 64,
                  beam_size: int = 1, max_len: int = 20, length_penalty: float = 0.0,
                  num_workers: int = 0, device: str = "cpu") -> list[tuple[str, float]]:
    """Captions image files in batches, in order.

    Args:
        loaded: A captioner from :func:`captioning.checkpoint.load_captioner`.
        paths: Image files.
        batch_size: Images per forward pass.
        beam_size: 1 decodes greedily; larger runs batched beam search.
        max_len: Maximum words per caption.
        length_penalty: Length-penalty exponent for beam search.
        num_workers: DataLoader worker processes reading images.
        device: Where the model runs.

    Returns:
        ``(caption, score)`` per path.
    """
    model = loaded.model.to(device).eval()
    loader = DataLoader(_ImageFiles(paths, loaded.image_size), batch_size=batch_size, num_workers=num_workers)
    results: list[tuple[str, float]] = []
    for images in loader:
        out = model.generate(images.to(device), max_len, beam_size, length_penalty)
        results += [(loaded.vocab.decode(t), s) for t, s in zip(out.tokens.tolist(), out.scores.tolist())]
    return results
