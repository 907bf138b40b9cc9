"""The ``captioning`` command.

``captioning fit|validate|test|predict --config CONFIG`` runs LightningCLI (:mod:`captioning.cli.fit`); other
subcommands (listed in :data:`COMMANDS`) are plain tools with their own ``main(argv)``, imported only when used.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, str] = {  # subcommand -> "module:function" taking argv
    "lab": "captioning.cli.lab:main",
    "evaluate": "captioning.cli.evaluate:main",
    "gallery": "captioning.cli.gallery:main",
    "benchmark": "captioning.cli.benchmark:main",
    "caption": "captioning.cli.caption:main",
    "features": "captioning.cli.features:main",
    "vqa": "captioning.cli.vqa:main",
    "vqa-evaluate": "captioning.cli.vqa:evaluate_main",
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``captioning`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module, function = COMMANDS[argv[0]].split(":")
        getattr(importlib.import_module(module), function)(argv[1:])
        return
    from captioning.cli.fit import cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
