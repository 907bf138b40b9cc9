"""A training loader that resumes mid-epoch exactly where a checkpoint was taken, on one or many ranks.

The order of an epoch is a pure function of ``(seed, epoch)`` (a ``DistributedSampler`` permutation, split
across ranks), and the loader reports how many batches it has handed out. Lightning stores that report in
every checkpoint (``state_dict``/``load_state_dict`` on a training ``DataLoader`` make it "stateful" for
Lightning's fit loop) and gives it back on ``--ckpt_path``: the resumed epoch skips exactly the batches
already trained on (their images are not even read) and then yields the same batches as an uninterrupted
run. Lightning does not pre-fetch from sized loaders, so the count equals the batches trained on.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed + epoch``) that can start an epoch after ``skip`` indices.

    Being a ``DistributedSampler``, Lightning keeps it instead of injecting its own under DDP.

    Args:
        dataset: The training dataset.
        num_replicas: Ranks sharing the epoch (``trainer.world_size``).
        rank: This rank (``trainer.global_rank``).
        seed: Shuffle seed; defaults to ``seed_everything``'s (``PL_GLOBAL_SEED``), else 0.
        shuffle: Shuffle each epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int | None = None,
                 shuffle: bool = True) -> None:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.skip = 0  # indices of this rank's share to leave out, for the next iteration only

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.skip:]
        self.skip = 0
        return iter(indices)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose state is the position within the epoch.

    ``state_dict()`` → ``{"epoch", "batches"}``: the sampler's epoch and the batches handed out in it.
    After ``load_state_dict``, the next iteration of that same epoch starts after those batches; a state
    from another epoch (e.g. a checkpoint written when the epoch had ended) is ignored.
    """

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, batch_size: int = 1, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch, self._batches, self._pending = sampler.epoch, 0, None

    def __iter__(self) -> Iterator[Any]:
        return self._counting()

    def _counting(self) -> Iterator[Any]:
        # A generator: runs at the first ``next``, after Lightning has called ``sampler.set_epoch``.
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        self._epoch, self._batches = sampler.epoch, 0
        if self._pending is not None and self._pending["epoch"] == sampler.epoch:
            self._batches = int(self._pending["batches"])
            sampler.skip = self._batches * self.batch_size
        self._pending = None
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if set(state) != {"epoch", "batches"}:
            raise ValueError(f"not a ResumableDataLoader state: keys {sorted(state)}")
        self._pending = dict(state)
