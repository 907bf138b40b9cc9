"""What the captioning and VQA LightningCLIs share: a trainer precision chosen for the machine when the config
leaves it unset, and oneDNN's kernel cache widened before anything runs."""

from __future__ import annotations

from pytorch_lightning.cli import LightningCLI

from captioning.core.runtime import fast_precision, keep_compiled_kernels


class MachineAwareCLI(LightningCLI):
    """A LightningCLI that, when ``trainer.precision`` is unset (``null``), trains in the fastest precision this
    machine runs correctly (:func:`captioning.core.runtime.fast_precision`: bf16 autocast on GPUs and on CPUs
    with native bf16 kernels, fp32 elsewhere). A config or command line that sets it is obeyed. Before the model and
    data are built it lets oneDNN keep more compiled kernels (:func:`~captioning.core.runtime.keep_compiled_kernels`:
    batches of varying shape, as VQA's, are otherwise compiled again at every step)."""

    def before_instantiate_classes(self) -> None:
        keep_compiled_kernels()
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.get("trainer")
        if trainer is not None and trainer.get("precision") is None:
            trainer.precision = fast_precision(trainer.get("accelerator"))
