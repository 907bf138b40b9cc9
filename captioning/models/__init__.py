"""Plain ``nn.Module``s (no Lightning): encoders, the decoders (recurrent, attention, RWKV, Mamba, Transformer;
registered by name) and the captioner."""

from captioning.models.attention import Att2in, ShowAttendTell, UpDown
from captioning.models.captioner import Captioner
from captioning.models.decoder import DECODERS, RNNDecoder
from captioning.models.encoders import ENCODERS, SmallCNN, TimmEncoder, TorchvisionEncoder
from captioning.models.mamba import MambaDecoder
from captioning.models.rwkv import RWKVDecoder
from captioning.models.transformer import TransformerDecoder

__all__ = ["Att2in", "ShowAttendTell", "UpDown", "Captioner", "DECODERS", "RNNDecoder", "RWKVDecoder",
           "MambaDecoder", "TransformerDecoder", "ENCODERS", "SmallCNN", "TimmEncoder", "TorchvisionEncoder"]
