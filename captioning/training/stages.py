"""The four Lightning data loaders of a data module from its one ``_loader(stage)``."""

from __future__ import annotations

import pytorch_lightning as L
from torch.utils.data import DataLoader


class StagedDataModule(L.LightningDataModule):
    """A LightningDataModule whose train/val/test/predict loaders all come from :meth:`_loader`."""

    def _loader(self, stage: str) -> DataLoader:
        """The loader of ``stage`` (``train``, ``val``, ``test`` or ``predict``)."""
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
