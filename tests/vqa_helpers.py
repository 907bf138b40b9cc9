"""Toy left/right scenes for the relation-question tests of the VQA fusions (FiLM, relational)."""

from __future__ import annotations

import torch

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
