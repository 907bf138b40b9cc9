"""`captioning features`: the cache holds the encoder's exact features, training reads it without running
the encoder, many workers read it at once, and a cache made by other weights is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from captioning.cli.fit import cli_main
from captioning.data.coco import CaptionDataset, read_caption_file
from captioning.data.images import load_image
from captioning.data.features import FeatureCache
from captioning.cli.features import main as features_main
from captioning.data.vocab import Vocabulary
from conftest import shapes_overrides

REPO = Path(__file__).resolve().parents[1]
FROZEN_LITE0 = ("model:\n  encoder:\n    class_path: captioning.models.TimmEncoder\n"
                "    init_args:\n      freeze: true\n")


@pytest.fixture(scope="module")
def cache(tiny_shapes: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """The train/val/test features of the tiny shapes data under the pretrained, frozen EfficientNet-Lite0."""
    tmp = tmp_path_factory.mktemp("features")
    layer = tmp / "lite0.yaml"
    layer.write_text(FROZEN_LITE0)
    config = ["--config", str(REPO / "configs/shapes.yaml"), "--config", str(layer), *shapes_overrides(tiny_shapes)]
    features_main([*config, "--output", str(tmp / "cache"), "--grid", "--batch-size", "4", "--num-workers", "0"])
    return tmp / "cache", config


def test_cache_holds_the_encoders_features_and_its_record(cache, tiny_shapes: Path) -> None:
    folder, config = cache
    index = json.loads((folder / "index.json").read_text())
    assert set(index["splits"]) == {"train", "val", "test"}
    identity = index["identity"]
    assert identity["encoder"] == {"name": "timm", "model": "tf_efficientnet_lite0"} and identity["image_size"] == 32
    assert len(identity["weights_sha256"]) == 64 and "bicubic" in identity["transform"]["pixels"]
    cli = cli_main([*config, "--data.init_args.features=null"], run=False)
    images = read_caption_file(tiny_shapes / "annotations/captions_val.json", tiny_shapes / "val")
    with torch.no_grad():
        v, grid = cli.model.captioner.encoder(torch.stack([load_image(i.path, 32) for i in images]), return_grid=True)
    split = FeatureCache(folder).split("val")
    np.testing.assert_array_equal(np.stack([split.pooled(i.image_id) for i in images]), v.numpy())
    np.testing.assert_array_equal(np.stack([split.grid(i.image_id) for i in images]), grid.numpy())


def test_many_workers_read_the_cache_concurrently(cache, tiny_shapes: Path) -> None:
    folder, _ = cache
    images = read_caption_file(tiny_shapes / "annotations/captions_train.json", tiny_shapes / "train")
    dataset = CaptionDataset(images, Vocabulary.build([]), 32, with_tokens=False,
                             features=FeatureCache(folder).split("train"))
    direct = torch.stack([dataset[i]["features"] for i in range(len(dataset))])
    loaded = torch.cat([b["features"] for b in DataLoader(dataset, batch_size=3, num_workers=2,
                                                          collate_fn=lambda items: {"features": torch.stack(
                                                              [it["features"] for it in items])})])
    torch.testing.assert_close(loaded, direct, rtol=0, atol=0)
    assert "image" not in dataset[0]


def test_training_reads_the_cache_and_never_runs_the_encoder(cache, tmp_path: Path) -> None:
    folder, config = cache
    cli = cli_main([*config, f"--data.init_args.features={folder}", f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.max_epochs=1", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false"],
                   run=False)
    calls = []
    cli.model.captioner.encoder.register_forward_hook(lambda *args: calls.append(1))
    cli.trainer.fit(cli.model, cli.datamodule)
    assert "val/CIDEr" in cli.trainer.logged_metrics and cli.trainer.global_step > 0 and not calls


def test_an_attention_decoder_trains_from_the_cached_grids(cache, tmp_path: Path) -> None:
    folder, config = cache
    attention = [*config, "--config", str(REPO / "configs/decoders/updown.yaml"), f"--data.init_args.features={folder}",
                 f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2", "--trainer.precision=32-true",
                 "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=1"]
    pooled = cli_main(attention, run=False)
    with pytest.raises(ValueError, match=r"updown decoder reads region grids .*gives \(\d+, 1280\): set "
                                         r"data.init_args.feature_kind to grid"):
        pooled.trainer.fit(pooled.model, pooled.datamodule)
    cli = cli_main([*attention, "--data.init_args.feature_kind=grid"], run=False)
    calls = []
    cli.model.captioner.encoder.register_forward_hook(lambda *args: calls.append(1))
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2 and not calls and cli.model.captioner.decoder.feature_dim == 1280


def test_a_cache_of_other_weights_or_an_unfrozen_encoder_is_refused(cache) -> None:
    folder, config = cache
    with pytest.raises(ValueError, match="different encoder.*\n.*weights_sha256"):
        cli_main([*config, f"--data.init_args.features={folder}", "--model.encoder.init_args.pretrained=false"],
                 run=False)
    with pytest.raises(ValueError, match="frozen encoder"):
        cli_main([*config, f"--data.init_args.features={folder}", "--model.encoder.init_args.freeze=false"],
                 run=False)
    with pytest.raises(ValueError, match="image_size 32, the data uses 64"):
        cli_main([*config, f"--data.init_args.features={folder}", "--data.init_args.image_size=64"], run=False)
    with pytest.raises(FileNotFoundError, match="feature cache index not found"):
        FeatureCache(folder / "missing")


def test_a_cache_without_grids_or_an_unknown_kind_is_refused_for_grid_decoders(tmp_path: Path) -> None:
    from captioning.data.features import SplitFeatures

    split = SplitFeatures(tmp_path, "val", {"pooled": "val.pooled.npy", "grid": None, "image_ids": [1, 2]})
    split.require([1, 2])  # pooled features are there
    with pytest.raises(ValueError, match=r"index\.json: split 'val' has no grid features; .*captioning features --grid"):
        split.require([1, 2], "grid")
    with pytest.raises(ValueError, match="feature kind must be 'pooled' or 'grid', got 'mean'"):
        split.require([1], "mean")
