"""The ``captioning`` command.

``captioning fit|validate|test|predict --config CONFIG`` runs LightningCLI; other subcommands (listed in
:data:`COMMANDS`) are plain tools with their own ``main(argv)``, imported only when used.
"""

from __future__ import annotations

import importlib
import sys

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from captioning.data.datamodule import CaptionDataModule
from captioning.lit.module import CaptioningModule
from captioning.lit.tracking import LogConfigToLoggers

COMMANDS: dict[str, str] = {  # subcommand -> "module:function" taking argv
    "lab": "captioning.lab.cli:main",
    "evaluate": "captioning.evaluation.evaluate:main",
    "gallery": "captioning.evaluation.gallery:main",
    "benchmark": "captioning.benchmark.cli:main",
    "caption": "captioning.caption:main",
    "features": "captioning.features:main",
    "vqa": "captioning.vqa_cli:main",
    "vqa-evaluate": "captioning.vqa_cli:evaluate_main",
}


class CaptioningCLI(LightningCLI):
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``captioning`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module, function = COMMANDS[argv[0]].split(":")
        getattr(importlib.import_module(module), function)(argv[1:])
        return
    cli_main(argv)


if __name__ == "__main__":
    main()
