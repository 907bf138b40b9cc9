"""Lightning: the training modules (one base for captioning and VQA), data modules, callbacks, objectives."""

from captioning.training.datamodules import CaptionDataModule, ShapesDataModule

__all__ = ["CaptionDataModule", "ShapesDataModule"]
