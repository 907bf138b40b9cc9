"""Caption data: COCO-format readers, the built-in shapes generator and the data modules."""

from captioning.data.datamodule import CaptionDataModule, ShapesDataModule

__all__ = ["CaptionDataModule", "ShapesDataModule"]
