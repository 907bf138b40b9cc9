"""The README's main job (scripts/main.py) end to end on a tiny shapes set."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, load_script, shapes_overrides


def test_main_job_trains_captions_and_evaluates(tiny_shapes: Path, tmp_path: Path, capsys) -> None:
    main_job = load_script("main.py")
    out = tmp_path / "run"
    metrics = main_job.main(["--config", str(REPO / "configs/shapes.yaml"), "--out", str(out), "--examples", "2",
                             "--metrics-backend", "python", *shapes_overrides(tiny_shapes), "--trainer.max_epochs=1",
                             "--trainer.enable_progress_bar=false"])
    results = json.loads((out / "captions_test.json").read_text())
    assert sorted(r["image_id"] for r in results) == list(range(2_000_001, 2_000_007))  # every test image
    written = json.loads((out / "metrics_test.json").read_text())
    assert {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"} <= set(written) and written["beam_size"] == 3
    assert written["Bleu_4"] == metrics["Bleu_4"] and 0.0 <= written["CHAIRs"] <= 1.0
    assert written["chair_mode"] == "reference" and len(written["per_image"]) == 6
    assert 0.0 <= written["binding_errors"] <= 1.0 and "binding_pairs" in written["per_image"][0]  # shapes: colours
    assert (out / "gallery/index.html").is_file() and (out / "hallucination/report.md").is_file()
    printed = capsys.readouterr().out
    assert "Test split: 6 images" in printed and "Examples" in printed
    assert all(name in printed for name in ("Bleu_4", "ROUGE_L", "CIDEr", "CHAIRs", "CHAIRi"))


def test_the_default_is_the_grid_reading_rwkv_captioner_and_the_lecture_model_is_one_flag() -> None:
    main_job = load_script("main.py")
    args, _ = main_job.parse_args([])
    layers = [Path(c) for c in args.config]
    assert all(layer.is_file() for layer in layers) and layers[0] == REPO / "configs/shapes.yaml"
    assert [layer.relative_to(REPO / "configs").as_posix() for layer in layers[1:]] == [
        "decoders/rwkv.yaml", "blocks/grid.yaml", "encoders/grid8.yaml", "schedules/attention.yaml"]
    args, _ = main_job.parse_args(["--config", "configs/shapes.yaml"])  # the lecture's pooled model
    assert args.config == ["configs/shapes.yaml"]


def test_main_job_runs_to_the_end_with_a_pooled_block_decoder(tiny_shapes: Path, tmp_path: Path) -> None:
    """Pooled RWKV has `attend` but no regions: the main job writes its gallery without maps (it crashed after
    training when it asked for them)."""
    main_job = load_script("main.py")
    out = tmp_path / "rwkv"
    layers = ["--config", str(REPO / "configs/shapes.yaml"), "--config", str(REPO / "configs/decoders/rwkv.yaml")]
    metrics = main_job.main([*layers, "--out", str(out), "--examples", "0", "--metrics-backend", "python",
                             *shapes_overrides(tiny_shapes), "--trainer.max_epochs=1",
                             "--trainer.enable_progress_bar=false"])
    assert 0.0 <= metrics["CHAIRs"] <= 1.0 and (out / "gallery/index.html").is_file()


def test_attention_maps_exist_exactly_for_decoders_that_attend_over_regions() -> None:
    from captioning.inference.engine import has_attention_maps
    from captioning.models import RNNDecoder, RWKVDecoder, UpDown

    assert has_attention_maps(RWKVDecoder(vocab_size=12, feature_dim=8, d_model=16, grid=True))
    assert not has_attention_maps(RWKVDecoder(vocab_size=12, feature_dim=8, d_model=16))
    assert has_attention_maps(UpDown(vocab_size=12, feature_dim=8))
    assert not has_attention_maps(RNNDecoder(vocab_size=12, feature_dim=8))
