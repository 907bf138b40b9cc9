"""``captioning fit|validate|test|predict --config CONFIG``: LightningCLI over the captioning module and data."""

from __future__ import annotations

from pytorch_lightning.cli import LightningArgumentParser

from captioning.training.datamodules import CaptionDataModule
from captioning.training.captioning import CaptioningModule
from captioning.training.cli import MachineAwareCLI
from captioning.training.tracking import LogConfigToLoggers


class CaptioningCLI(MachineAwareCLI):
    """LightningCLI whose derived values (vocabulary, image size, CHAIR synonym table) are linked from the data
    module."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.link_arguments("data.synonyms", "model.synonyms", apply_on="instantiate")
        parser.link_arguments("data.feature_identity", "model.cached_features", apply_on="instantiate")


def cli_main(args: list[str] | None = None, run: bool = True) -> CaptioningCLI:
    """Runs the LightningCLI on ``args`` (default: the command line) and returns it."""
    return CaptioningCLI(CaptioningModule, CaptionDataModule, subclass_mode_data=True,
                         save_config_callback=LogConfigToLoggers, save_config_kwargs={"overwrite": True},
                         args=args, run=run)
