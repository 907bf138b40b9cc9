"""What the captioning and VQA LightningCLIs share: a trainer precision chosen for the machine when the config
leaves it unset."""

from __future__ import annotations

from pytorch_lightning.cli import LightningCLI

from captioning.core.runtime import fast_precision


class MachineAwareCLI(LightningCLI):
    """A LightningCLI that, when ``trainer.precision`` is unset (``null``), trains in the fastest precision this
    machine runs correctly (:func:`captioning.core.runtime.fast_precision`: bf16 autocast on GPUs and on CPUs
    with native bf16 kernels, fp32 elsewhere). A config or command line that sets it is obeyed."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.get("trainer")
        if trainer is not None and trainer.get("precision") is None:
            trainer.precision = fast_precision(trainer.get("accelerator"))
