"""The benchmark workloads and the GEMM FLOP count of one training step."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from captioning.benchmark.timing import gemm_flops
from captioning.models.decoding import END
from captioning.models.decoder import DECODERS, RNNDecoder


@dataclass(frozen=True)
class Workload:
    """Sizes of one benchmark run.

    Args:
        vocab_size: Words including the special tokens.
        embed_dim: Word embedding width.
        hidden_dim: LSTM hidden width (one layer).
        feature_dim: Pooled image feature width, injected through ``W_ih`` at every step.
        batch_size: Captions per training step.
        words: Words per caption; training sequences are ``<START> w_1 … w_words`` → ``w_1 … <END>``.
        decode_images: Images decoded per greedy/beam measurement.
        baseline_beam_images: Images the per-image baseline beam search decodes (its rate is per image, so a
            subset suffices and keeps the run short).
        beam_size: Beam width of the beam measurement.
        long_len: Sequence length of the full vs truncated BPTT memory measurement.
        long_batch: Batch of that measurement.
        window: Truncated-BPTT window.
        matmul_seconds: Seconds of back-to-back GEMMs per shape for the sustained matmul rate.
        decoder: ``lstm`` (the codebase's one-layer every-step-injection LSTM, with every lever measured), a
            registered block decoder (``rwkv``, ``mamba``, ``transformer``: one block of width ``hidden_dim``) or
            an attention decoder (``show_attend_tell``, ``att2in``, ``updown``: LSTMs of width ``hidden_dim``,
            attention width ``hidden_dim``) over ``regions`` region features of width ``feature_dim``, projected
            once per image to ``hidden_dim`` (``region_dim``, as ruotianluo's ``att_embed``).
        regions: Regions of the grid an attention decoder reads (49: a 7×7 feature map).
    """

    vocab_size: int = 10_000
    embed_dim: int = 512
    hidden_dim: int = 512
    feature_dim: int = 2048
    batch_size: int = 64
    words: int = 16
    decode_images: int = 256
    baseline_beam_images: int = 16
    beam_size: int = 3
    long_len: int = 512
    long_batch: int = 8
    window: int = 32
    matmul_seconds: float = 2.0
    decoder: str = "lstm"
    regions: int = 49

    @property
    def attends(self) -> bool:
        """Whether the decoder reads a region grid (B, regions, D) instead of a pooled feature (B, D)."""
        return self.decoder in ATTENTION_DECODERS

    @property
    def steps(self) -> int:
        """Positions per training sequence: the words plus ``<END>``."""
        return self.words + 1

    def to_dict(self) -> dict:
        return asdict(self)


WORKLOADS = {
    "matched": Workload(),
    "tiny": Workload(vocab_size=50, embed_dim=8, hidden_dim=8, feature_dim=12, batch_size=4, words=3,
                     decode_images=5, baseline_beam_images=2, beam_size=2, long_len=12, long_batch=2, window=4,
                     matmul_seconds=0.02, regions=4),
}


ATTENTION_DECODERS = ("show_attend_tell", "att2in", "updown")
DECODER_CHOICES = ("lstm", "rwkv", "mamba", "transformer", *ATTENTION_DECODERS)


def image_features(w: Workload, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Random image features of the workload: pooled (B, D), or a region grid (B, regions, D) for attention."""
    shape = (batch, w.regions, w.feature_dim) if w.attends else (batch, w.feature_dim)
    return torch.randn(*shape, generator=gen)


def train_step_flops(w: Workload) -> float:
    """GEMM FLOPs of one training step (forward + backward) of the every-step-injection LSTM decoder.

    Only the work the model needs is counted (elementwise ops, softmax and the optimizer are not GEMMs), with
    N = batch × positions and G = 4 × hidden:

    forward: input term ``x W_xh^T`` (N·E·G), image term ``v W_ih^T`` once per caption (B·D·G), recurrent
    term ``h W_hh^T`` (N·H·G), vocabulary projection ``h W_hy^T`` (N·H·V);
    backward: for each of these the weight gradient (same size), plus the input gradients the model needs:
    of the embeddings (N·E·G), of the recurrent state (N·H·G) and of the LSTM outputs (N·H·V); the image
    feature gets no gradient (the decoder is trained alone here).

    A fused call that feeds ``[x_t; v]`` to every position performs ``N·D·G`` more multiply-adds per
    GEMM; they are not counted, so a codebase cannot raise its "fraction of peak" by wasting work.
    """
    n, b, g = w.batch_size * w.steps, w.batch_size, 4 * w.hidden_dim
    e, d, h, v = w.embed_dim, w.feature_dim, w.hidden_dim, w.vocab_size
    forward = gemm_flops(n, e, g) + gemm_flops(b, d, g) + gemm_flops(n, h, g) + gemm_flops(n, h, v)
    weight_grads = forward
    input_grads = gemm_flops(n, g, e) + gemm_flops(n, g, h) + gemm_flops(n, v, h)
    return forward + weight_grads + input_grads


def workload_gemm_shapes(w: Workload) -> list[tuple[int, int, int]]:
    """(m, k, n) of the workload's largest GEMMs: the vocabulary projection (forward, input and weight
    gradients) and the batched LSTM input term; the sustained matmul rate is measured on these."""
    n, h, v, g = w.batch_size * w.steps, w.hidden_dim, w.vocab_size, 4 * w.hidden_dim
    return [(n, h, v), (n, v, h), (h, n, v), (n, w.embed_dim, g)]


def make_decoder(w: Workload, vocab_size: int, feature_dim: int) -> nn.Module:
    """The workload's decoder: one LSTM layer with every-step injection, or one block of the registered
    ``w.decoder`` of width ``hidden_dim``."""
    if w.decoder == "lstm":
        return RNNDecoder(vocab_size, feature_dim, embed_dim=w.embed_dim, hidden_dim=w.hidden_dim, cell="lstm",
                          num_layers=1, injection="every_step")
    if w.decoder not in DECODER_CHOICES:
        raise ValueError(f"unknown benchmark decoder {w.decoder!r}; choose one of {', '.join(DECODER_CHOICES)}")
    if w.attends:
        return DECODERS.build(dict(name=w.decoder, vocab_size=vocab_size, feature_dim=feature_dim,
                                   embed_dim=w.embed_dim, hidden_dim=w.hidden_dim, attention_dim=w.hidden_dim,
                                   region_dim=w.hidden_dim))
    return DECODERS.build(dict(name=w.decoder, vocab_size=vocab_size, feature_dim=feature_dim, d_model=w.hidden_dim,
                               num_layers=1))


def build_decoder(w: Workload, device: torch.device, seed: int = 0) -> nn.Module:
    """The workload's decoder (:func:`make_decoder`), with ``<END>`` unreachable so that every decoded caption
    has exactly ``words`` words and the decoding work is fixed."""
    torch.manual_seed(seed)
    dec = make_decoder(w, w.vocab_size, w.feature_dim).to(device)
    with torch.no_grad():
        dec.out.bias[END] = -1e9  # finite: log-probabilities stay finite, <END> is never the best word
    return dec


def training_batch(w: Workload, device: torch.device, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, D) (or grids (B, regions, D)) and token sequences ``<START> w_1 … w_n <END>``
    (B, n + 2)."""
    gen = torch.Generator().manual_seed(seed)
    v = image_features(w, w.batch_size, gen)
    tokens = torch.randint(4, w.vocab_size, (w.batch_size, w.words + 2), generator=gen)
    tokens[:, 0], tokens[:, -1] = 1, END
    return v.to(device), tokens.to(device)
