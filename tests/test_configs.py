"""Every config runs a one-batch smoke fit (shapes layers on the tiny dataset; COCO on coco-mini)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captioning.cli.fit import cli_main
from conftest import SHARED, requires_shared, shapes_overrides

REPO = Path(__file__).resolve().parents[1]
LAYERS = sorted(str(p.relative_to(REPO)) for kind in ("cells", "injection", "decoders")
                for p in (REPO / "configs" / kind).glob("*.yaml"))
SMOKE = ["--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_every_layer_config_is_covered() -> None:
    assert {"configs/cells/rnn_tanh.yaml", "configs/cells/rnn_relu.yaml", "configs/cells/gru.yaml",
            "configs/cells/lstm.yaml", "configs/injection/init_state.yaml",
            "configs/injection/first_token.yaml", "configs/decoders/rwkv.yaml", "configs/decoders/mamba.yaml",
            "configs/decoders/transformer.yaml"} <= set(LAYERS)


@pytest.mark.parametrize("layer", [None, *LAYERS])
def test_shapes_config_smoke_fit(layer: str | None, tiny_shapes: Path, tmp_path: Path) -> None:
    configs = ["--config", str(REPO / "configs/shapes.yaml")] + (["--config", str(REPO / layer)] if layer else [])
    cli = cli_main(["fit", *configs, *shapes_overrides(tiny_shapes), f"--trainer.default_root_dir={tmp_path}",
                    *SMOKE])
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    assert "val/Bleu_4" in cli.trainer.logged_metrics
    if layer:
        for key, value in _layer_values(REPO / layer):
            assert cli.model.captioner.decoder.config[key] == value
        if layer.startswith("configs/decoders/"):  # the layer swaps the decoder class, registered by its file name
            assert cli.model.captioner.decoder.config["name"] == Path(layer).stem


def _layer_values(path: Path):
    import yaml

    init_args = yaml.safe_load(path.read_text())["model"]["decoder"]["init_args"]
    return init_args.items()


@requires_shared("coco-mini")
@pytest.mark.parametrize("layer", [None, "configs/decoders/updown.yaml"])
def test_coco_config_smoke_fit_on_coco_mini(layer: str | None, tmp_path: Path) -> None:
    configs = ["--config", str(REPO / "configs/coco.yaml")] + (["--config", str(REPO / layer)] if layer else [])
    cli = cli_main(["fit", *configs,
                    f"--data.init_args.root={SHARED / 'coco-mini'}", "--data.init_args.batch_size=2",
                    "--data.init_args.eval_batch_size=2", "--data.init_args.num_workers=0",
                    "--data.init_args.min_word_count=1", "--data.init_args.image_size=128",
                    f"--trainer.default_root_dir={tmp_path}", *SMOKE])
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"])
    assert cli.model.captioner.encoder.out_dim == 1280
    assert not any(p.requires_grad for p in cli.model.captioner.encoder.parameters())
    if layer:  # EfficientNet-Lite0's last feature map: 4×4 regions of 1280 channels at 128 px (7×7 at 224 px)
        assert cli.model.captioner.decoder.feature_dim == 1280


@pytest.mark.parametrize("name", ["rwkv", "mamba", "transformer"])
def test_block_decoder_grid_layer_smoke_fit(name: str, tiny_shapes: Path, tmp_path: Path) -> None:
    layers = ["configs/shapes.yaml", f"configs/decoders/{name}.yaml", "configs/blocks/grid.yaml",
              "configs/encoders/grid8.yaml", "configs/schedules/attention.yaml"]
    cli = cli_main(["fit", *(a for layer in layers for a in ("--config", str(REPO / layer))),
                    *shapes_overrides(tiny_shapes), f"--trainer.default_root_dir={tmp_path}", *SMOKE])
    decoder = cli.model.captioner.decoder
    assert decoder.config["name"] == name and decoder.config["grid"] and decoder.needs_grid
    assert decoder.feature_dim == cli.model.captioner.encoder.grid_dim  # linked: the regions' width, not v's
    assert torch.isfinite(cli.trainer.logged_metrics["train/loss"]) and "val/Bleu_4" in cli.trainer.logged_metrics
