"""VQA models: a recurrent question encoder, image–question fusion and an answer classifier.

* :class:`QuestionEncoder` — word embeddings through the captioner's cells (``rnn_tanh``, ``rnn_relu``,
  ``lstm``, ``gru``; one fused call), the last layer's state at each question's last token.
* :class:`ProductFusion` — "deeper LSTM Q + norm I" (Antol et al. 2015; Lu et al. 2015): the L2-normalized
  pooled image feature and the question vector are each mapped by a tanh layer to a common width and
  multiplied element-wise. The normalized feature is multiplied by ``sqrt(D)`` (unit mean square per
  component): with PyTorch's default initialization an unscaled unit vector gives near-zero products and the
  question path barely learns.
* :class:`AttentionFusion` — one glimpse of question-guided soft attention over the encoder's spatial grid
  (Yang et al. 2016, one stacked-attention layer): ``a_n = softmax_n(w^T tanh(W_g g_n + W_q q))``, the attended
  grid feature ``sum_n a_n g_n`` is then fused with ``q`` as in :class:`ProductFusion`.
* :class:`VQAModel` — encoder → fusion → classifier (an MLP over the answer vocabulary).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.cells import build_rnn, check_cell, run_fused

QuestionEncoderFactory = Callable[[int], nn.Module]  # (question vocabulary size) -> question encoder
FusionFactory = Callable[[int, int, int], nn.Module]  # (question dim, pooled image dim, grid dim) -> fusion


class QuestionEncoder(nn.Module):
    """Embeds question tokens and runs a recurrent cell over them.

    Args:
        vocab_size: Question vocabulary size (linked from the data).
        embed_dim: Word embedding width.
        hidden_dim: Hidden width of every layer (the question vector's width).
        cell: ``rnn_tanh``, ``rnn_relu``, ``lstm`` or ``gru``.
        num_layers: Stacked recurrent layers.
        dropout: Dropout on embeddings and between layers.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 300, hidden_dim: int = 512, cell: str = "lstm",
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.cell, self.out_dim = check_cell(cell), hidden_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = build_rnn(cell, embed_dim, hidden_dim, num_layers, dropout)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Question vectors.

        Args:
            tokens: Right-padded token ids, (Q, T).
            lengths: Number of real tokens of each question, (Q,).

        Returns:
            The last layer's output at each question's last real token, (Q, H).
        """
        x = self.drop(torch.tanh(self.embed(tokens)))  # (Q, T, E)
        out, _ = run_fused(self.cell, self.rnn, x)  # (Q, T, H); padding comes after, so it cannot leak in
        last = (lengths - 1).clamp(min=0).to(out.device)
        return out[torch.arange(out.size(0), device=out.device), last]  # (Q, H)


class ProductFusion(nn.Module):
    """Element-wise product of tanh-projected question and L2-normalized image ("deeper LSTM Q + norm I").

    Args:
        question_dim: Width of the question vector.
        image_dim: Width of the pooled image feature ``v``.
        grid_dim: Width of the grid features (unused here).
        fused_dim: Common width of both projections.
        dropout: Dropout on both inputs.
    """

    needs_grid = False

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int = 0, fused_dim: int = 1024,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.q_proj, self.v_proj = nn.Linear(question_dim, fused_dim), nn.Linear(image_dim, fused_dim)
        self.drop, self.out_dim = nn.Dropout(dropout), fused_dim

    def forward(self, q: Tensor, v: Tensor, grid: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with their images' pooled features (Q, Dv) → (Q, F)."""
        v = F.normalize(v, dim=-1) * v.size(-1) ** 0.5  # unit L2 norm, rescaled to unit mean square
        return torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.v_proj(self.drop(v)))  # (Q, F)


class AttentionFusion(nn.Module):
    """Question-guided soft attention over the spatial grid, then the product fusion.

    Args:
        question_dim: Width of the question vector.
        image_dim: Width of the pooled feature ``v`` (unused: the attended grid replaces it).
        grid_dim: Width of each grid position's feature.
        fused_dim: Common width of the projections.
        attention_dim: Width of the attention layer.
        dropout: Dropout on the inputs.
    """

    needs_grid = True

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int, fused_dim: int = 1024,
                 attention_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.g_att, self.q_att = nn.Linear(grid_dim, attention_dim), nn.Linear(question_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)
        self.product = ProductFusion(question_dim, grid_dim, fused_dim=fused_dim, dropout=dropout)
        self.out_dim = fused_dim
        self.last_weights: Tensor | None = None  # (Q, N), for inspection

    def forward(self, q: Tensor, v: Tensor, grid: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with their images' grids (Q, N, Dg) → (Q, F)."""
        if grid is None:
            raise ValueError("AttentionFusion needs the encoder's grid")
        grid = F.normalize(grid, dim=-1)  # (Q, N, Dg)
        logits = self.score(torch.tanh(self.g_att(grid) + self.q_att(q).unsqueeze(1))).squeeze(-1)  # (Q, N)
        weights = logits.softmax(dim=-1)
        self.last_weights = weights.detach()
        attended = torch.bmm(weights.unsqueeze(1), grid).squeeze(1)  # (Q, Dg)
        return self.product(q, attended)


class VQAModel(nn.Module):
    """Encoder → question encoder → fusion → classifier over the answer vocabulary.

    Args:
        encoder: Image encoder returning ``(v, grid)``.
        question_encoder: A built question encoder with ``out_dim``.
        fusion: A built fusion module with ``out_dim`` and ``needs_grid``.
        num_answers: Number of answer classes.
        hidden_dim: Width of the classifier's hidden layer.
        dropout: Dropout before each classifier layer.
    """

    def __init__(self, encoder: nn.Module, question_encoder: nn.Module, fusion: nn.Module, num_answers: int,
                 hidden_dim: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder, self.question_encoder, self.fusion = encoder, question_encoder, fusion
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(fusion.out_dim, hidden_dim), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden_dim, num_answers))

    def forward(self, images: Tensor, tokens: Tensor, lengths: Tensor, owner: Tensor) -> Tensor:
        """Answer logits.

        Args:
            images: Image batch in [0, 1], (B, 3, S, S); each image is encoded once.
            tokens: Questions, (Q, T).
            lengths: Question lengths, (Q,).
            owner: Index of each question's image in ``images``, (Q,).

        Returns:
            Logits over the answers, (Q, A).
        """
        v, grid = self.encoder(images, return_grid=self.fusion.needs_grid)  # (B, D), (B, N, Dg) | None
        q = self.question_encoder(tokens, lengths)  # (Q, H)
        fused = self.fusion(q, v[owner], None if grid is None else grid[owner])  # (Q, F)
        return self.classifier(fused)  # (Q, A)


def grid_dim(encoder: nn.Module, image_size: int) -> int:
    """Width of the encoder's grid features, found with one dummy image (batch-norm statistics untouched)."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            _, grid = encoder(torch.zeros(1, 3, image_size, image_size), return_grid=True)  # (1, N, Dg)
    finally:
        encoder.train(was_training)
    return grid.size(-1)


def build_vqa_model(encoder: nn.Module, question_encoder: QuestionEncoderFactory, fusion: FusionFactory,
                    vocab_size: int, num_answers: int, image_size: int, hidden_dim: int = 1000,
                    dropout: float = 0.5) -> VQAModel:
    """Builds the question encoder and fusion from their factories with the widths they depend on."""
    q_enc = question_encoder(vocab_size)
    fuse = fusion(q_enc.out_dim, encoder.out_dim, grid_dim(encoder, image_size))
    return VQAModel(encoder, q_enc, fuse, num_answers, hidden_dim, dropout)
