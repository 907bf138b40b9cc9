"""Question-conditioned processing of the encoder grid: FiLM (Perez et al. 2018).

A FiLM layer scales and shifts every channel of a feature map by amounts the question predicts,
``FiLM(x | q) = (1 + Δγ(q)) ⊙ x + β(q)``. ``Δγ`` and ``β`` are linear in ``q`` without bias, so a zero
question code leaves the features unconditioned (the identity). :class:`FiLMFusion` maps the grid with a
1×1 convolution (batch-normalized, not L2-normalized per cell: that would blow empty cells up to the size
of objects), runs a few residual blocks ``x + relu(FiLM(BN(conv_k(relu(conv1([x, coords]))))))`` over it
(with coordinate channels, so features can say *where*), then a 1×1 convolution, max- and mean-pooled over
positions: max pooling keeps "where is the thing the question names" (left/right relations), mean pooling
keeps "how many". As in the other fusions, the pooled vector ``p`` meets the question once more in
``tanh(W_q q) ⊙ tanh(W_p p)``: without that direct path the classifier sees almost the same input for every
question while the modulation is still small, and a 2-epoch run on shapes stayed near the answer priors.

The module is registered as the ``film`` fusion in :data:`captioning.models.vqa.FUSIONS`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def grid_side(grid: Tensor, who: str) -> int:
    """Side of a square grid (Q, N, D), or ``ValueError`` naming ``who`` needs it square."""
    side = round(grid.size(1) ** 0.5)
    if side * side != grid.size(1):
        raise ValueError(f"{who} needs a square grid, got {grid.size(1)} positions")
    return side


def coordinates(side: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Each position's ``(x, y)`` in [-1, 1], row-major as the encoders flatten (h, w), (side², 2)."""
    axis = torch.linspace(-1.0, 1.0, side, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=-1)  # (N, 2)


def unit_features(grid: Tensor, with_coordinates: bool, who: str) -> Tensor:
    """Grid features (Q, N, Dg) L2-normalized and rescaled to unit mean square per component, with each
    position's ``(x, y)`` appended if asked (then the grid must be square) → (Q, N, Dg[+2])."""
    grid = F.normalize(grid, dim=-1) * grid.size(-1) ** 0.5
    if not with_coordinates:
        return grid
    coords = coordinates(grid_side(grid, who), grid.device, grid.dtype)  # (N, 2)
    return torch.cat([grid, coords.expand(grid.size(0), -1, -1)], dim=-1)


def _channels_last(x: Tensor) -> Tensor:
    # Per-question maps are many and small: CPU (oneDNN) convolutions, bf16 ones above all, are several
    # times faster in channels-last layout, whose backward pass is otherwise pathologically slow.
    return x.contiguous(memory_format=torch.channels_last)


class FiLM(nn.Module):
    """Per-channel scale and shift predicted from a conditioning vector: ``(1 + Δγ(q)) ⊙ x + β(q)``.

    Args:
        cond_dim: Width of the conditioning (question) vector.
        channels: Channels of the modulated feature map.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels, bias=False)  # zero code -> identity
        nn.init.normal_(self.proj.weight, std=1.0 / cond_dim**0.5)  # Δγ, β of about |q|'s RMS at the start

    def forward(self, x: Tensor, q: Tensor) -> Tensor:
        """Modulates ``x`` (Q, C, H, W) by ``q`` (Q, Dq) → (Q, C, H, W)."""
        gamma, beta = self.proj(q).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # (Q, C, 1, 1) each
        return (1 + gamma) * x + beta


class FiLMBlock(nn.Module):
    """A residual block: ``x + relu(FiLM(BN(conv3x3(relu(conv1x1([x, coords]))))))``.

    Args:
        cond_dim: Width of the question vector.
        channels: Feature channels (in and out).
        kernel_size: Side of the second convolution (odd).
    """

    def __init__(self, cond_dim: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels + 2, channels, 1)
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)  # FiLM supplies the affine part
        self.film = FiLM(cond_dim, channels)

    def forward(self, x: Tensor, coords: Tensor, q: Tensor) -> Tensor:
        """``x`` (Q, C, H, W), ``coords`` (Q, 2, H, W), ``q`` (Q, Dq) → (Q, C, H, W)."""
        h = F.relu(self.inp(_channels_last(torch.cat([x, coords], dim=1))))  # (Q, C, H, W)
        return x + F.relu(self.film(self.norm(self.conv(h)), q))


class FiLMFusion(nn.Module):
    """Question-conditioned convolutions over the grid (FiLM), pooled to one vector per question.

    Args:
        question_dim: Width of the question vector.
        image_dim: Width of the pooled feature ``v`` (unused: the conditioned grid replaces it).
        grid_dim: Width of each grid position's feature.
        fused_dim: Channels of the final 1×1 convolution and width of the fused output.
        channels: Channels of the FiLM blocks.
        blocks: Number of FiLM blocks.
        kernel_size: Spatial kernel of each block's second convolution.
        dropout: Dropout on the question vector.
    """

    needs_grid = True

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int, fused_dim: int = 256, channels: int = 64,
                 blocks: int = 2, kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if blocks < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FiLMFusion: need blocks >= 1 and an odd kernel_size, got {blocks}, {kernel_size}")
        self.config = dict(name="film", question_dim=question_dim, image_dim=image_dim, grid_dim=grid_dim,
                           fused_dim=fused_dim, channels=channels, blocks=blocks, kernel_size=kernel_size,
                           dropout=dropout)
        self.stem = nn.Sequential(nn.Conv2d(grid_dim + 2, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.blocks = nn.ModuleList(FiLMBlock(question_dim, channels, kernel_size) for _ in range(blocks))
        self.head = nn.Sequential(nn.Conv2d(channels + 2, fused_dim, 1), nn.ReLU())
        self.q_proj, self.p_proj = nn.Linear(question_dim, fused_dim), nn.Linear(2 * fused_dim, fused_dim)
        self.p_norm = nn.LayerNorm(2 * fused_dim)  # pooled ReLU maps are large: unnormalized they saturate tanh
        self.drop, self.out_dim = nn.Dropout(dropout), fused_dim

    def feature_maps(self, q: Tensor, grid: Tensor) -> Tensor:
        """The conditioned maps before pooling: ``q`` (Q, Dq), ``grid`` (Q, N, Dg) → (Q, fused_dim, s, s)."""
        side = grid_side(grid, "FiLMFusion")
        x = grid.unflatten(1, (side, side)).permute(0, 3, 1, 2)  # (Q, Dg, s, s), a channels-last view
        coords = coordinates(side, grid.device, grid.dtype).T.reshape(1, 2, side, side).expand(x.size(0), -1, -1, -1)
        x = self.stem(_channels_last(torch.cat([x, coords], dim=1)))  # (Q, C, s, s)
        q = self.drop(q)
        for block in self.blocks:
            x = block(x, coords, q)
        return self.head(_channels_last(torch.cat([x, coords], dim=1)))  # (Q, F, s, s)

    def forward(self, q: Tensor, v: Tensor, grid: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with their images' grids (Q, N, Dg) → (Q, F)."""
        if grid is None:
            raise ValueError("FiLMFusion needs the encoder's grid")
        maps = self.feature_maps(q, grid).flatten(2)  # (Q, F, N)
        pooled = torch.cat([maps.amax(dim=-1), maps.mean(dim=-1)], dim=-1)  # (Q, 2F)
        return torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.p_proj(self.p_norm(pooled)))  # (Q, F)
