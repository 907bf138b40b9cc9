"""Learning-rate schedules stepped per optimizer step, sized from the trainer's run length, and the optimizer/scheduler
set-up shared by the LightningModules."""

from __future__ import annotations

import math
from typing import Callable

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Linear warm-up to the optimizer's learning rate, then a cosine decay to ``final_lr_ratio`` of it.

    ``total_steps`` defaults to the trainer's estimated number of optimizer steps (set by the training
    module), so the schedule follows ``max_epochs`` without copying it into the config.

    Args:
        optimizer: The wrapped optimizer.
        warmup_steps: Steps of linear warm-up from 0.
        total_steps: Steps until the end of the decay; ``None`` until the module sets it.
        final_lr_ratio: Learning rate at the end, as a fraction of the peak.
    """

    interval = "step"  # read by the training module

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None,
                 final_lr_ratio: float = 0.0) -> None:
        self.warmup_steps, self.total_steps, self.final_lr_ratio = warmup_steps, total_steps, final_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """Multiplier of the peak learning rate at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.total_steps:
            return 1.0
        progress = min(1.0, (step + 1 - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_lr_ratio + (1 - self.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def configure_optimization(module: nn.Module, optimizer: Callable, lr_scheduler: Callable | None) -> object:
    """What a LightningModule's ``configure_optimizers`` returns: ``optimizer`` over the trainable parameters,
    and the scheduler (stepped per epoch unless it has ``interval = "step"``); a scheduler whose
    ``total_steps`` is ``None`` gets the run's step count from the trainer.

    Args:
        module: The LightningModule (attached to its trainer).
        optimizer: Optimizer class and options (LightningCLI's ``OptimizerCallable``).
        lr_scheduler: Scheduler class and options, or ``None``.
    """
    opt = optimizer(p for p in module.parameters() if p.requires_grad)
    if lr_scheduler is None:
        return opt
    scheduler = lr_scheduler(opt)
    if getattr(scheduler, "total_steps", 0) is None:
        scheduler.total_steps = int(module.trainer.estimated_stepping_batches)
    return {"optimizer": opt,
            "lr_scheduler": {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch")}}
