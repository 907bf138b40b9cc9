"""The FiLM fusion (question-conditioned convolutions over the grid) and configs/vqa/film.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from captioning.models.film import FiLM, FiLMFusion
from captioning.models.vqa import FUSIONS
from vqa_helpers import assert_reloads_identically, fit_vqa_layer, left_right_scenes, mirrored


def test_zero_question_code_leaves_the_features_unconditioned() -> None:
    film = FiLM(5, 3)
    x = torch.randn(4, 3, 2, 2)  # (Q, C, H, W)
    torch.testing.assert_close(film(x, torch.zeros(4, 5)), x)
    q = torch.randn(4, 5)
    assert not torch.allclose(film(x, q), x)  # a question does scale and shift the channels
    fusion = FiLMFusion(5, 0, 6, fused_dim=4, channels=3, blocks=2).eval()
    grid = torch.randn(4, 9, 6)  # (Q, N = 3×3, Dg)
    conditioned_by_zero = fusion.feature_maps(torch.zeros(4, 5), grid)
    for block in fusion.blocks:
        block.film = _Unconditioned()
    torch.testing.assert_close(conditioned_by_zero, fusion.feature_maps(q, grid))  # q no longer matters
    assert fusion(q, None, grid).shape == (4, 4) and fusion.out_dim == 4


class _Unconditioned(nn.Module):
    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return x


def test_film_fusion_is_registered_and_checks_its_input() -> None:
    fusion = FUSIONS.build({"name": "film", "question_dim": 5, "image_dim": 0, "grid_dim": 6, "channels": 4})
    assert isinstance(fusion, FiLMFusion) and fusion.config["channels"] == 4
    with pytest.raises(ValueError, match="square grid"):
        fusion(torch.randn(2, 5), None, torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="odd kernel_size"):
        FiLMFusion(5, 0, 6, kernel_size=2)


def test_trained_relation_answers_flip_when_the_scene_is_mirrored(one_thread) -> None:
    """A tiny FiLM model learns "is A left/right of B?" (question code: one-hot side) on 4×4 grids, and
    its answers on held-out scenes flip when the scene is mirrored left-right."""
    g = torch.Generator().manual_seed(0)
    fusion = FiLMFusion(2, 0, 2, fused_dim=16, channels=16, blocks=2)
    model = nn.ModuleDict({"fusion": fusion, "out": nn.Sequential(nn.Linear(fusion.out_dim, 32), nn.ReLU(),
                                                                  nn.Linear(32, 2))})  # as VQAModel's classifier
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        grid, left = left_right_scenes(64, g)
        side = torch.randint(0, 2, (64,), generator=g)  # 0: "left of", 1: "right of"
        answer = left ^ side  # yes (1): A is left of B and "left of" was asked, or right of and "right of"
        logits = model["out"](fusion(nn.functional.one_hot(side, 2).float(), None, grid))
        loss = nn.functional.cross_entropy(logits, answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    grid, left = left_right_scenes(200, g)
    ask_left = nn.functional.one_hot(torch.zeros(200, dtype=torch.long), 2).float()
    with torch.no_grad():
        said = model["out"](fusion(ask_left, None, grid)).argmax(-1)
        said_mirrored = model["out"](fusion(ask_left, None, mirrored(grid))).argmax(-1)
    assert (said == left).float().mean() > 0.95
    assert (said_mirrored != said).float().mean() > 0.95  # left of became right of


def test_film_config_smoke_fit_and_load_vqa_round_trip(tiny_shapes: Path, tmp_path: Path) -> None:
    cli = fit_vqa_layer("configs/vqa/film.yaml", tiny_shapes, tmp_path)
    fusion = cli.model.model.fusion
    assert isinstance(fusion, FiLMFusion) and fusion.config["kernel_size"] == 1
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    path = tmp_path / "film.ckpt"
    cli.trainer.save_checkpoint(path)
    assert assert_reloads_identically(cli, path).meta["fusion"]["name"] == "film"
