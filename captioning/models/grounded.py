"""Word grounding: every phrase of the question finds its object, signed word gates compare them.

Relation questions ("is the red circle to the left of the blue square?") need the two named objects picked
apart and their positions compared. :class:`~captioning.models.vqa.AttentionFusion` derives its glimpses from
one question vector ``q`` that names both objects at once, and stays at chance on them. :class:`WordGrounding`
is the word-level path that :class:`~captioning.models.vqa.GroundedFusion` adds beside those glimpses:

1. **Grounding.** Every token's local phrase feature ``p_i`` (the word and the one before it, context-free:
   "blue square" reads alike in "is there a blue square?" and in "... of the blue square?") attends over the
   grid by itself, ``a_in = softmax_n(W_p p_i . k(g_n) / sqrt(A))`` (``k``: a linear map or a small MLP), and
   reads ``r_i = sum_n a_in g_n`` (``g_n``: the L2-normalized grid feature with the cell's ``(x, y)``) and a
   soft count ``c_i = sum_n sigmoid(s_in) / sqrt(N)``. What a phrase grounds to is learned from every question
   that names an object, not from relation questions alone.
2. **Signed comparison.** The recurrent state ``h_i`` knows where word ``i`` stands in the question (before or
   after "of"). Head ``k`` combines the readings with signed gates ``gamma_ik = tanh(w_k . h_i)``, zero at
   padding: ``d_k = sum_i gamma_ik [r_i, c_i]``. Gates ``+1`` on the first object and ``-1`` on the second give
   ``r_A - r_B``, whose ``x`` part is the two objects' horizontal offset. No softmax over words has to sharpen
   before anything is read (a softmax word attention stayed near uniform in 2,000 steps: docs/vqa.md,
   "Relational fusion"). When the readings include the grid features (``read_features``, the default) the
   gates start at zero, so a model starts as if the path were absent and its readings do not disturb the
   glimpses; with coordinates only they start at PyTorch's default.

The fusion multiplies ``d`` with the question (``tanh(W_q q) * tanh(W_d d)``): "left of" against "right of"
(in ``q``) times the sign of the offset (in ``d``) is a single product.

:class:`PhrasePointers` gives each of the fusion's glimpses a phrase of its own to add to its query, picked by
an order-aware pointer over the question's tokens (``GroundedFusion(pointers=True)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from captioning.models.question_words import QuestionWords


class WordGrounding(nn.Module):
    """Grounds every token's phrase feature in the grid and combines the readings with signed word gates.

    Args:
        word_dim: Width of the word states and of the phrase features.
        feat_dim: Width of each grid position's feature (with its coordinates).
        attention_dim: Width of the query and key projections.
        heads: Number of signed combinations ``d_k``.
        key_hidden: Hidden width of an MLP computing the keys (0: a linear map).
        read_features: Read the grid features with the coordinates (else the coordinates alone).
    """

    def __init__(self, word_dim: int, feat_dim: int, attention_dim: int = 128, heads: int = 4,
                 key_hidden: int = 0, read_features: bool = True) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"GroundedFusion: heads must be >= 1, got {heads}")
        self.query = nn.Linear(word_dim, attention_dim)
        self.key = (nn.Sequential(nn.Linear(feat_dim, key_hidden), nn.ReLU(), nn.Linear(key_hidden, attention_dim))
                    if key_hidden else nn.Linear(feat_dim, attention_dim))
        self.gate = nn.Linear(word_dim, heads)
        if read_features:
            nn.init.zeros_(self.gate.weight)  # d_k = 0 at first: the model starts as the glimpses alone
            nn.init.zeros_(self.gate.bias)
        self.read_features = read_features
        self.heads, self.out_dim = heads, heads * ((feat_dim if read_features else 2) + 1)
        self.last_weights: Tensor | None = None  # (Q, T, N) each token's grid attention, for inspection
        self.last_gates: Tensor | None = None  # (Q, T, K) each token's signed gate per head

    def forward(self, feats: Tensor, words: QuestionWords) -> Tensor:
        """Grid features (Q, N, D) and the question word by word → the heads' signed sums (Q, K·(D+1))."""
        if words.phrases is None:
            raise ValueError("GroundedFusion needs a question encoder with phrases: true")
        queries, keys = self.query(words.phrases), self.key(feats)  # (Q, T, A), (Q, N, A)
        scores = torch.bmm(queries, keys.transpose(1, 2)) / keys.size(-1) ** 0.5  # (Q, T, N)
        weights = scores.softmax(dim=-1)
        values = feats if self.read_features else feats[..., -2:]  # (Q, N, D) or (Q, N, 2): the coordinates
        readings = torch.cat([torch.bmm(weights, values),  # (Q, T, D): what and where each phrase names
                              torch.sigmoid(scores).sum(-1, keepdim=True) / scores.size(-1) ** 0.5], dim=-1)
        gates = torch.tanh(self.gate(words.states)) * words.mask.unsqueeze(-1)  # (Q, T, K), 0 at padding
        self.last_weights, self.last_gates = weights.detach(), gates.detach()
        return torch.bmm(gates.transpose(1, 2), readings).flatten(1)  # (Q, K·(D+1))


class PhrasePointers(nn.Module):
    """Gives each glimpse of :class:`~captioning.models.vqa.GroundedFusion` a phrase of its own, picked by an
    order-aware pointer over the question's tokens.

    Pointer ``k`` weighs the tokens by ``softmax_i(c_k . p_i + b_k pos_i)`` (``p_i``: the phrase features,
    ``pos_i``: 0 at the first token, 1 at the last); ``b`` starts spread from -1 to 1, so the first glimpse leans
    to the question's start and the last to its end. The picked phrase, projected to the attention width, is
    added to the glimpse's query. The projection starts at zero, so a model starts as without pointers.

    Args:
        word_dim: Width of the phrase features.
        attention_dim: Width of the glimpses' attention layer.
        glimpses: Number of glimpses (one pointer each).
    """

    def __init__(self, word_dim: int, attention_dim: int, glimpses: int) -> None:
        super().__init__()
        self.content = nn.Linear(word_dim, glimpses)
        self.order = nn.Parameter(torch.linspace(-1.0, 1.0, glimpses) if glimpses > 1 else torch.zeros(1))
        self.project = nn.Linear(word_dim, attention_dim, bias=False)
        nn.init.zeros_(self.project.weight)
        self.last_weights: Tensor | None = None  # (Q, K, T)

    def forward(self, words: QuestionWords) -> Tensor:
        """The question word by word → each glimpse's query offset (Q, K, A)."""
        if words.phrases is None:
            raise ValueError("GroundedFusion(pointers=True) needs a question encoder with phrases: true")
        lengths = words.mask.sum(1, keepdim=True)  # (Q, 1)
        steps = torch.arange(words.mask.size(1), device=lengths.device)
        position = steps / (lengths - 1).clamp(min=1)  # (Q, T): 0 at the first token, 1 at the last
        scores = self.content(words.phrases) + position.unsqueeze(-1) * self.order  # (Q, T, K)
        weights = words.softmax(scores.float().transpose(1, 2))  # (Q, K, T)
        self.last_weights = weights.detach()
        return self.project(torch.bmm(weights.to(words.phrases.dtype), words.phrases))  # (Q, K, A)
