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

:class:`WordRelations` (``GroundedFusion(word_relations=K)``, 2 in ``configs/vqa/shapes.yaml``) grounds every
phrase by a training objective of its own, not through the answers, and compares the places with gates that see the
whole question: the relations are then learned from a first-order signal (docs/vqa.md, "Word relations").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class WordRelations(nn.Module):
    """Where each named thing is, compared across the question's words: the relation heads of
    :class:`~captioning.models.vqa.GroundedFusion` (``word_relations``).

    1. **Grounding.** Every token's phrase feature ``p_i`` attends over the grid with its own projections,
       ``a_in = softmax_n(W_p p_i . W_k g_n / sqrt(A))``, and reads its place ``(x_i, y_i) = sum_n a_in (x_n, y_n)``.
    2. **Grounding objective** (training only; ``auxiliary_loss``). What a phrase finds must tell its words:
       the attended features, minus what the same phrase finds in another image of the batch, predict the token
       and the one before it (cross-entropy over the word ids, hashed into ``grounding_buckets`` classes: exact
       for a vocabulary of at most that many words). The subtraction cancels whatever a place alone could encode
       (the coordinates, the border cells look alike in every image), so the loss falls only when each phrase
       finds the thing it names ("red circle" the red circle), in every question that names one, from the first
       step and whatever the answers.
    3. **Comparison.** Head ``k`` sums the places with gates from the token's state and the whole question,
       ``rho_k = sum_i gamma_ik (x_i, y_i)``, ``gamma_ik = MLP([h_i, q])_k`` (zero at padding). In "is the A to
       the left of the B?" gates ``-1`` on A and ``+1`` on B give ``x_B - x_A``, positive exactly when the answer is
       yes; "right" reverses the gates. With the grounding trained apart, ``x_A`` alone predicts the answer once
       "left" or "right" is known, so each gate learns from a first-order signal. (A product of two factors that
       must both be learned from the answers, as the compared glimpses' offset and gate, is learned on some
       random draws only: docs/vqa.md, "Relation glimpses" and "Word relations".)

    Args:
        word_dim: Width of the word states, of the phrase features and of the question vector.
        feat_dim: Width of each grid position's feature (with its coordinates, the last two channels).
        heads: Number of gated sums ``rho_k``.
        attention_dim: Width of the grounding's queries and keys.
        gate_hidden: Hidden width of the gates' MLP.
        grounding_weight: Weight of the grounding objective (0: none).
        grounding_buckets: Classes of the grounding objective's word prediction (word id modulo this).
    """

    def __init__(self, word_dim: int, feat_dim: int, heads: int = 2, attention_dim: int = 64,
                 gate_hidden: int = 64, grounding_weight: float = 1.0, grounding_buckets: int = 64) -> None:
        super().__init__()
        if heads < 1 or grounding_weight < 0 or grounding_buckets < 1:
            raise ValueError(f"WordRelations: heads and grounding_buckets must be >= 1 and grounding_weight >= 0, got "
                             f"{heads}, {grounding_buckets} and {grounding_weight}")
        self.query, self.key = nn.Linear(word_dim, attention_dim), nn.Linear(feat_dim, attention_dim)
        self.gate_hidden, self.gate = nn.Linear(2 * word_dim, gate_hidden), nn.Linear(gate_hidden, heads)
        self.predict = nn.Linear(feat_dim - 2, 2 * grounding_buckets)  # the token's word and the one before it
        self.grounding_weight, self.out_dim = grounding_weight, 2 * heads
        self.auxiliary_loss: Tensor | None = None  # the grounding objective of the last training call
        self.last_weights: Tensor | None = None  # (Q, T, N) each token's grid attention, for inspection
        self.last_gates: Tensor | None = None  # (Q, T, K)

    @staticmethod
    def attend(queries: Tensor, keys: Tensor) -> Tensor:
        """Every token's attention (Q, T, N) from its projected phrase (Q, T, A) over projected cells (Q, N, A)."""
        return (torch.bmm(queries, keys.transpose(1, 2)) / keys.size(-1) ** 0.5).softmax(dim=-1)

    def forward(self, feats: Tensor, words: QuestionWords, q: Tensor) -> Tensor:
        """Grid features with coordinates (Q, N, D), the question word by word and its vector (Q, H) → the
        heads' gated places (Q, K·2)."""
        if words.phrases is None:
            raise ValueError("GroundedFusion(word_relations > 0) needs a question encoder with phrases: true")
        queries, keys = self.query(words.phrases), self.key(feats)  # (Q, T, A), (Q, N, A)
        weights = self.attend(queries, keys)  # (Q, T, N)
        if self.training and self.grounding_weight > 0:
            self.auxiliary_loss = self.grounding_weight * self.grounding_loss(queries, keys, weights, feats, words)
        place = torch.bmm(weights, feats[..., -2:])  # (Q, T, 2)
        h, w = q.size(1), self.gate_hidden.weight  # one layer over [h_i, q]; q's part once per question
        hidden = F.linear(words.states, w[:, :h]) + F.linear(q, w[:, h:], self.gate_hidden.bias).unsqueeze(1)
        gates = self.gate(torch.relu(hidden)) * words.mask.unsqueeze(-1)  # (Q, T, K), 0 at padding
        self.last_weights, self.last_gates = weights.detach(), gates.detach()
        return torch.bmm(gates.transpose(1, 2), place).flatten(1)  # (Q, K·2)

    def grounding_loss(self, queries: Tensor, keys: Tensor, weights: Tensor, feats: Tensor,
                       words: QuestionWords) -> Tensor:
        """Cross-entropy of each real token's word and the word before it (their ids hashed into
        ``grounding_buckets``), predicted from what its phrase finds in its image minus what it finds in another:
        the question half a batch away (another image unless the batch holds one, whose contrast is then zero)."""
        if words.tokens is None:
            raise ValueError("WordRelations' grounding objective needs the question's tokens (QuestionWords.tokens)")
        shift = feats.size(0) // 2
        elsewhere = self.attend(queries, keys.roll(shift, dims=0))  # (Q, T, N): the same phrases, another grid
        found = torch.bmm(weights, feats[..., :-2]) - torch.bmm(elsewhere, feats.roll(shift, dims=0)[..., :-2])
        logits = self.predict(found).float().unflatten(-1, (2, -1))  # (Q, T, 2, buckets)
        targets = torch.stack([words.tokens, F.pad(words.tokens, (1, 0))[:, :-1]], dim=-1) % logits.size(-1)
        return F.cross_entropy(logits[words.mask].flatten(0, 1), targets[words.mask].flatten())  # targets (Q, T, 2)
