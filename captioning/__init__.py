"""Recurrent image captioning and VQA on PyTorch Lightning."""

__version__ = "0.1.0"
