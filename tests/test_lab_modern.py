"""Modern recurrences: the char LMs made of registered decoders, their costs, and the ``modern`` experiment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from captioning.cli.lab import main
from captioning.lab.config import ConfigError, load_config
from captioning.lab.costs import (fit_exponent, generation_cost, input_gradient_norms, peak_rss_growth,
                                  training_cost)
from captioning.lab.modern import ModernConfig, exponents
from captioning.lab.seqmodels import MODELS, ModelShape, build_lm, count_parameters, train_for, width_for
from captioning.models.decoding import START

SHAPE = ModelShape()
V = 40  # a small character vocabulary


def tiny(name: str, width: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_lm(name, V, width, SHAPE)


def test_fit_exponent_recovers_known_powers() -> None:
    xs = [256, 512, 1024, 2048, 4096]
    assert fit_exponent(xs, [3e-6 * x for x in xs]) == pytest.approx(1.0)
    assert fit_exponent(xs, [2e-9 * x * x for x in xs]) == pytest.approx(2.0)
    assert fit_exponent(xs, [5.0] * len(xs)) == pytest.approx(0.0, abs=1e-12)
    # Linear work plus a quadratic term: the slope sits between 1 and 2, nearer 2 where the square dominates.
    mixed = [1e-6 * x + 1e-9 * x * x for x in xs]
    assert 1 < fit_exponent(xs[:2], mixed[:2]) < fit_exponent(xs[-2:], mixed[-2:]) < 2
    with pytest.raises(ValueError, match="at least two"):
        fit_exponent([1], [1])


def test_exponents_fit_every_curve_of_a_cost_table() -> None:
    rows = [{"length": n, "seconds": 1e-9 * n * n, "saved_bytes": 100 * n, "peak_rss_bytes": None}
            for n in (256, 512, 1024, 2048)]
    fitted = exponents(rows)
    assert fitted["time"] == pytest.approx(2.0) and fitted["time_long"] == pytest.approx(2.0)
    assert fitted["saved_bytes"] == pytest.approx(1.0) and fitted["peak_rss"] is None


@pytest.mark.parametrize("name", MODELS)
def test_width_meets_the_parameter_target(name: str) -> None:
    width = width_for(name, 107, 50_000, SHAPE)
    count = count_parameters(build_lm(name, 107, width, SHAPE))
    assert abs(count - 50_000) < 0.08 * 50_000
    assert width % SHAPE.num_heads == 0


@pytest.mark.parametrize("name", MODELS)
def test_stepping_the_lm_equals_teacher_forcing(name: str) -> None:
    model = tiny(name).double().eval()
    tokens = torch.randint(4, V, (2, 7))
    with torch.no_grad():
        parallel, _ = model(tokens)  # (2, 7, V)
        state, steps = model.start(2), []
        for t in range(tokens.size(1)):
            logits, state = model.step(tokens[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), parallel)


def test_decoding_state_is_fixed_for_recurrences_and_grows_for_the_transformer() -> None:
    sizes = {name: [r["state_bytes"] for r in generation_cost(tiny(name), (1, 100), probe=2)] for name in MODELS}
    for name in ("lstm", "rwkv", "mamba"):
        assert sizes[name][0] == sizes[name][1] > 0, name
    # The key/value cache gains one position per step: keys and values of width C in every layer.
    per_position = 2 * SHAPE.block_layers * 16 * 4  # float32 bytes
    assert sizes["transformer"][1] - sizes["transformer"][0] == 99 * per_position


@pytest.mark.parametrize("name", MODELS)
def test_saved_memory_of_a_training_pass_grows_linearly(name: str) -> None:
    model, gen = tiny(name), torch.Generator().manual_seed(0)
    short, long = (training_cost(model, n, 1, 1, gen) for n in (64, 256))
    assert long["saved_bytes"] / short["saved_bytes"] == pytest.approx(4.0, rel=0.1)
    assert long["seconds"] > 0 and short["saved_bytes_per_token"] == short["saved_bytes"] / 64


def test_peak_rss_growth_sees_a_large_temporary() -> None:
    growth = peak_rss_growth(lambda: torch.ones(16 * 2 ** 20).sum())  # 64 MiB, freed before it returns
    if growth is None:
        pytest.skip("this kernel cannot reset the resident-set high-water mark")
    assert 60 * 2 ** 20 < growth < 200 * 2 ** 20


def test_gradient_norms_vanish_back_through_an_untrained_lstm_but_not_the_transformer() -> None:
    tokens = torch.randint(4, V, (4, 65))
    lstm, transformer = (input_gradient_norms(tiny(name), tokens) for name in ("lstm", "transformer"))
    assert len(lstm) == len(transformer) == 64 and all(math.isfinite(x) for x in lstm + transformer)
    assert lstm[-1] < 1e-3 * lstm[0]  # 63 multiplications by the recurrent Jacobian
    assert transformer[-1] > 1e-2 * transformer[1]  # attention reaches every position directly


def test_training_stops_after_the_budget() -> None:
    ids, gen = torch.randint(4, V, (2000,)), torch.Generator().manual_seed(0)
    history = train_for(tiny("transformer"), ids, 0.3, 4, 16, 1e-2, 1.0, 3, gen)
    assert 0.3 <= history[-1]["seconds"] < 2.0 and history[-1]["tokens"] == history[-1]["step"] * 4 * 16
    assert all(math.isfinite(r["train_bpc"]) for r in history)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="models must be some of lstm, rwkv, mamba, transformer"):
        load_config(ModernConfig, None, ["--models", "lstm,gru"])
    with pytest.raises(ConfigError, match="at least two different lengths"):
        load_config(ModernConfig, None, ["--lengths", "512"])


def test_quick_run_measures_every_model_and_length(tmp_path: Path, capsys) -> None:
    main(["modern", "--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    cfg = saved["config"]
    assert [m["model"] for m in saved["models"]] == list(MODELS)
    counts = [m["parameters"] for m in saved["models"]]
    assert max(counts) < 1.2 * min(counts)  # about equal sizes
    for m in saved["models"]:
        assert math.isfinite(m["val_bpc"]) and m["val_bpc"] < saved["log2_vocab"], m["model"]
        assert m["steps"] >= cfg["min_steps"] == 20 and m["train_seconds"] >= cfg["budget_seconds"]
        assert [r["length"] for r in m["training_cost"]] == cfg["lengths"]
        assert all(math.isfinite(v) for v in (m["exponents"]["time"], m["exponents"]["saved_bytes"]))
        assert [r["generated"] for r in m["generation"]] == cfg["generated"]
        assert len(m["gradient_flow"]["trained"]) == cfg["flow_len"]
        states = [r["state_bytes"] for r in m["generation"]]
        assert (states[-1] > states[0]) if m["model"] == "transformer" else (states[-1] == states[0])
    assert (tmp_path / "modern.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "held-out bits per character" in out and "decoding state" in out
