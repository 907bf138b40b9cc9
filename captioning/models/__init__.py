"""Plain ``nn.Module``s (no Lightning): encoders, the recurrent and attention decoders and the captioner."""

from captioning.models.attention import Att2in, ShowAttendTell, UpDown
from captioning.models.captioner import Captioner
from captioning.models.decoder import RNNDecoder
from captioning.models.encoders import ENCODERS, SmallCNN, TimmEncoder, TorchvisionEncoder

__all__ = ["Att2in", "ShowAttendTell", "UpDown", "Captioner", "RNNDecoder", "ENCODERS", "SmallCNN", "TimmEncoder", "TorchvisionEncoder"]
