"""Toy left/right scenes and shared checks for the relation-question tests of the VQA fusions (FiLM, relational,
grounded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from captioning.cli.vqa import vqa_cli_main
from captioning.data.vocab import AnswerVocab, Vocabulary
from captioning.inference.checkpoint import load_vqa, save_vqa
from captioning.models import SmallCNN
from captioning.models.vqa import QuestionEncoder, QuestionWords, build_vqa_model
from conftest import REPO, shapes_overrides

SIDE = 4  # the scenes are SIDE × SIDE grids


def left_right_scenes(n: int, generator: torch.Generator,
                      background: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Grids (n, 16, D) of 4×4 scenes with object A (channel 0) and B (channel 1) in different columns, plus
    small noise, and whether A is left of B, (n,). With ``background`` a third channel is 1 at empty cells
    (as a CNN's features say "nothing here"): without it, L2-normalized noise cells look like objects."""
    grid = torch.zeros(n, SIDE, SIDE, 3 if background else 2)  # (n, h, w, D)
    if background:
        grid[..., 2] = 1.0
    for i in range(n):
        col_a, col_b = torch.randperm(SIDE, generator=generator)[:2].tolist()
        row_a, row_b = torch.randint(0, SIDE, (2,), generator=generator).tolist()
        grid[i, row_a, col_a, 0] = grid[i, row_b, col_b, 1] = 1.0
        if background:
            grid[i, row_a, col_a, 2] = grid[i, row_b, col_b, 2] = 0.0
    grid += 0.05 * torch.randn(grid.shape, generator=generator)
    left = (grid[..., 0].sum(1).argmax(1) < grid[..., 1].sum(1).argmax(1)).long()  # (n,): is A left of B?
    return grid.flatten(1, 2), left


def mirrored(grid: torch.Tensor) -> torch.Tensor:
    """The scenes of :func:`left_right_scenes` mirrored left-right (columns reversed), (n, 16, D)."""
    return grid.unflatten(1, (SIDE, SIDE)).flip(2).flatten(1, 2)


def assert_offset_of_a_from_b(grid: torch.Tensor, left: torch.Tensor, offset: torch.Tensor, swapped: torch.Tensor,
                              offset_mirrored: torch.Tensor) -> None:
    """``offset`` (n,) is x_A - x_B on the scenes of :func:`left_right_scenes` (negative where A is left of B);
    with the two names swapped, and on the mirrored scenes, it is negated."""
    col = grid.unflatten(1, (SIDE, SIDE)).sum(1).argmax(1)  # (n, D): each channel's column
    x = -1 + 2 * col / (SIDE - 1)  # the column's x in [-1, 1]
    torch.testing.assert_close(offset, x[:, 0] - x[:, 1], atol=1e-3, rtol=0)
    assert ((offset < 0) == left.bool()).all()
    torch.testing.assert_close(swapped, -offset)
    torch.testing.assert_close(offset_mirrored, -offset, atol=1e-3, rtol=0)


def fit_vqa_layer(layer: str, tiny_shapes: Path, tmp_path: Path):
    """One-batch fit (``fast_dev_run``) of ``configs/vqa/shapes.yaml`` with ``layer`` on a copy of the tiny
    shapes set; returns the CLI (its model, trainer and data module)."""
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)
    return vqa_cli_main(["fit", "--config", str(REPO / "configs/vqa/shapes.yaml"), "--config", str(REPO / layer),
                         *shapes_overrides(root), f"--trainer.default_root_dir={tmp_path}",
                         "--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false",
                         "--trainer.enable_model_summary=false"])


def assert_reloads_identically(cli, path: Path):
    """``load_vqa(path)`` gives the trained model's logits on a validation batch; returns what it loaded."""
    loaded = load_vqa(path)
    batch = next(iter(cli.datamodule.val_dataloader()))
    args = batch["image"], batch["tokens"], batch["lengths"], batch["owner"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(*args), cli.model.model.eval()(*args))
    assert not loaded.model.training
    return loaded


def question_words(enc: QuestionEncoder, tokens: list[list[int]]) -> tuple[torch.Tensor, QuestionWords]:
    """``enc`` over right-padded token rows (0 = padding) → ``(q, QuestionWords)``."""
    lengths = torch.tensor([sum(t > 0 for t in row) for row in tokens])
    return enc(torch.tensor(tokens), lengths, return_words=True)


class GridEncoder(nn.Module):
    """Passes toy grids through as the image encoder's output: ``images`` (B, N, D) → (mean, grid)."""

    out_dim = 3

    def forward(self, images: torch.Tensor, return_grid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return images.mean(1), images


def ask_twice_then_padded(fusion: nn.Module, enc: QuestionEncoder, inspect) -> tuple:
    """One 3×3 scene (grid width 5) asked two questions that differ in one word, then the first one again with two
    padding tokens. Returns both outputs (2, F) and (1, F) and ``inspect(fusion)`` after each call."""
    grid = torch.randn(1, 9, 5).expand(2, -1, -1)  # (Q, N = 3×3, Dg): one scene, asked twice
    with torch.no_grad():
        q, words = question_words(enc, [[1, 4, 5, 2], [1, 4, 6, 2]])
        out = fusion(q, None, grid, words=words)
        seen = inspect(fusion)
        q_padded, padded_words = question_words(enc, [[1, 4, 5, 2, 0, 0]])
        padded = fusion(q_padded, None, grid[:1], words=padded_words)
    return out, padded, seen, inspect(fusion)


def assert_needs_square_grid_and_words(fusion: nn.Module) -> None:
    """A word-reading fusion (question width 6, grid width 5) refuses a non-square grid and a missing question."""
    q, words = question_words(QuestionEncoder(10, 4, 6, phrases=True), [[1, 4, 2]])
    with pytest.raises(ValueError, match="square grid"):
        fusion(q, None, torch.randn(1, 5, 5), words=words)
    with pytest.raises(ValueError, match="word by word"):
        fusion(q, None, torch.randn(1, 4, 5))


def assert_round_trip(tmp_path: Path, fusion, name: str) -> dict:
    """A tiny model with ``fusion`` (a factory of question, pooled and grid widths) saved by ``save_vqa`` and rebuilt
    by ``load_vqa`` gives identical logits; returns the fusion's stored description."""
    vocab = Vocabulary(["is", "the", "red", "circle", "left", "of", "blue", "square"])
    answers = AnswerVocab(["yes", "no"])
    model = build_vqa_model(SmallCNN(channels=(8, 16), out_dim=16, grid_size=4),
                            lambda v: QuestionEncoder(v, 8, 12, phrases=True), fusion,
                            len(vocab), len(answers), image_size=32, hidden_dim=12, dropout=0.0).eval()
    loaded = load_vqa(save_vqa(tmp_path / f"{name}.ckpt", model, vocab, answers, 32))
    assert loaded.meta["fusion"]["name"] == name and loaded.meta["question_encoder"]["phrases"] is True
    tokens = torch.tensor([vocab.encode("is the red circle left of the blue square"), vocab.encode("is the red circle")
                           + [0] * 5])  # (Q=2, T)
    args = torch.rand(2, 3, 32, 32), tokens, torch.tensor([11, 6]), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(*args), model(*args), rtol=0, atol=0)
    return loaded.meta["fusion"]
