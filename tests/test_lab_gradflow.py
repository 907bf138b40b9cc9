"""Gradient flow back through time against the largest singular value of W_hh, and clipping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.lab.gradflow import GradFlowConfig, gradient_norms, measure, run, scaled_rnn, spectrum, unroll

LINEAR = dict(cells=("rnn_tanh",), input_scales=(1e-6,), hidden_size=16, input_size=4, seq_len=20, batch_size=4)


def test_scaled_rnn_has_the_requested_largest_singular_value() -> None:
    for init in ("orthogonal", "default"):
        rnn = scaled_rnn("lstm", 4, 8, 1.3, init)
        for block in rnn.weight_hh_l0.detach().split(8):
            assert torch.linalg.matrix_norm(block, ord=2).item() == pytest.approx(1.3, rel=1e-5)
    assert spectrum(scaled_rnn("rnn_tanh", 4, 8, 0.7))["spectral_radius"] == pytest.approx(0.7, rel=1e-4)


def test_unroll_matches_the_fused_module() -> None:
    for cell in ("rnn_tanh", "lstm", "gru"):
        rnn = scaled_rnn(cell, 3, 5, 1.0)
        x = torch.randn(2, 6, 3)
        torch.testing.assert_close(torch.stack(unroll(cell, rnn, x), dim=1), rnn(x)[0])


def test_norms_vanish_below_one_and_explode_above_one_in_the_linear_regime() -> None:
    rows = {r["scale"]: r for r in measure(GradFlowConfig(**LINEAR, scales=(0.5, 1.0, 1.5)))}
    for scale, row in rows.items():
        norms = torch.tensor(row["norms"])  # k steps back from the loss
        assert norms[0].item() == pytest.approx(1.0, rel=1e-5)  # dL/dh_T is the unit readout vector
        assert row["growth_per_step"] == pytest.approx(scale, rel=1e-3)  # exactly sigma_max^k
        ratios = norms[1:] / norms[:-1]
        if scale < 1:
            assert (ratios < 1).all() and norms[-1] < 1e-4
        elif scale > 1:
            assert (ratios > 1).all() and norms[-1] > 1e3


def test_saturation_shrinks_exploding_gradients() -> None:
    cfg = GradFlowConfig(**{**LINEAR, "input_scales": (1e-6, 3.0)}, scales=(1.5,))
    linear, saturated = measure(cfg)
    assert saturated["norms"][-1] < linear["norms"][-1]


def test_clipping_bounds_the_total_norm() -> None:
    rnn = scaled_rnn("rnn_tanh", 4, 16, 1.5)
    out = gradient_norms("rnn_tanh", rnn, 1e-6 * torch.randn(4, 20, 4), 0.5, torch.Generator().manual_seed(0))
    assert out["grad_norm"] > 10  # exploding
    assert out["clipped_norm"] == pytest.approx(0.5, rel=1e-4)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in rnn.parameters()]))
    assert total.item() <= 0.5 + 1e-5


def test_run_writes_results_and_figure(tmp_path: Path) -> None:
    cfg = GradFlowConfig(**{**LINEAR, "cells": ("rnn_tanh", "gru")}, scales=(0.9, 1.1), train_steps=5)
    run(cfg, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["settings"]) == 4 and set(saved["training"]) == {"no clip", "clip 1"}
    assert saved["training"]["clip 1"]["grad_norm"][0] == saved["training"]["no clip"]["grad_norm"][0]
    assert (tmp_path / "gradflow.png").read_bytes()[:4] == b"\x89PNG"
