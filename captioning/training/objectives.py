"""Training objectives other than the module's built-in cross-entropy (chosen in config as
``model.objective``)."""

from __future__ import annotations

from torch import Tensor

from captioning.models.decoding import scheduled_sampling


class Objective:
    """A training loss: ``objective(module, batch)`` returns the loss of one training batch.

    It may use the module's captioner, vocabulary, logging and :meth:`global_token_mean`; decoding stays in
    :mod:`captioning.models.decoding` and rewards in :mod:`captioning.metrics`.
    """

    def __call__(self, module, batch: dict) -> Tensor:
        raise NotImplementedError


class ScheduledSampling(Objective):
    """Cross-entropy with scheduled sampling: some input words are the model's own samples.

    The probability of feeding a sample is 0 for ``start_step`` steps, then rises linearly to ``max_prob``
    over ``ramp_steps`` steps and stays there. Each step decodes in Python (slower than teacher forcing).

    Args:
        max_prob: Final probability of replacing a ground-truth input word (0.25 is common).
        start_step: Optimizer steps of pure teacher forcing first.
        ramp_steps: Steps over which the probability rises to ``max_prob``.
    """

    def __init__(self, max_prob: float = 0.25, start_step: int = 0, ramp_steps: int = 1000) -> None:
        if not 0.0 <= max_prob <= 1.0:
            raise ValueError(f"max_prob must be in [0, 1], got {max_prob}")
        self.max_prob, self.start_step, self.ramp_steps = max_prob, start_step, ramp_steps

    def probability(self, step: int) -> float:
        """The replacement probability at optimizer step ``step``."""
        progress = (step - self.start_step) / self.ramp_steps if self.ramp_steps > 0 else float(step >= self.start_step)
        return self.max_prob * min(1.0, max(0.0, progress))

    def __call__(self, module, batch: dict) -> Tensor:
        tokens = batch["tokens"]  # (N, T)
        v = module.features(batch)[batch["owner"]]  # (N, D): each image encoded once (or cached)
        prob = self.probability(module.global_step)
        logits = scheduled_sampling(module.captioner.decoder, v, tokens[:, :-1], prob)  # (N, T-1, V)
        module.log("train/sampling_prob", prob, batch_size=tokens.size(0))
        return module.token_mean_loss(logits, tokens[:, 1:])
