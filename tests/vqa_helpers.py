"""Toy left/right scenes for the relation-question tests of the VQA fusions (FiLM, relational)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from captioning.cli.vqa import vqa_cli_main
from captioning.inference.checkpoint import load_vqa
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
