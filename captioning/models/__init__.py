"""Plain ``nn.Module``s (no Lightning): encoders, the recurrent decoder and the captioner."""

from captioning.models.captioner import Captioner
from captioning.models.decoder import RNNDecoder
from captioning.models.encoders import ENCODERS, SmallCNN, TimmEncoder, TorchvisionEncoder

__all__ = ["Captioner", "RNNDecoder", "ENCODERS", "SmallCNN", "TimmEncoder", "TorchvisionEncoder"]
