"""Question-conditioned relational fusion: attention steps that each read their own part of the question.

Relation questions ("is the red circle to the left of the blue square?") need the two named objects picked
apart and their positions compared. :class:`~captioning.models.vqa.AttentionFusion` derives all its glimpses
from one question vector ``q``, which names both objects at once, and stays at chance on them.

:class:`RelationalFusion` reads the question word by word (:class:`~captioning.models.question_words.QuestionWords`).
Step ``k`` weighs the words by ``beta_ki = softmax_i(w_k . h_i)`` over the recurrent states ``h_i`` (which
know where a word stands in the question) and summarizes ``c_k = sum_i beta_ki phi_i``. With ``phrases``
``phi_i`` is the encoder's local phrase feature (the word and the one before it, context-free); otherwise the
state ``h_i`` itself. The state at the second noun of a relation question carries the whole question before
it, which a grid query learned on one-object questions does not match; the phrase "blue square" reads alike in
"is there a blue square?" and in "... of the blue square?". Step ``k`` attends over the grid features ``g_n``
(L2-normalized, with the cell's coordinates) with ``s_kn = u^T tanh(W_g g_n + W_c^k c_k [+ W_m m_{k-1}])``
(its own projection ``W_c^k``; with ``chain`` it also sees the previous step's attended feature, as stacked
attention) and reads ``m_k = sum_n softmax_n(s_kn) g_n``, which carries where the attended object is. The
classifier input compares the steps explicitly: ``z = [m_1 .. m_K, m_1 - m_2 .. m_{K-1} - m_K, soft counts]``
and ``tanh(W_q q) * tanh(W_z z)``, so "left of" against "right of" (in ``q``) times the sign of the
coordinate difference (in ``z``) is a single product.

Registered as the ``relational`` fusion in :data:`captioning.models.vqa.FUSIONS`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from captioning.models.film import unit_features
from captioning.models.question_words import QuestionWords


class RelationalFusion(nn.Module):
    """Several grid attention steps, step ``k`` led by its own word-attention summary of the question.

    Args:
        question_dim: Width of the question vector, of the word states and of the phrase features.
        image_dim: Width of the pooled feature ``v`` (unused: the attended grid replaces it).
        grid_dim: Width of each grid position's feature.
        fused_dim: Common width of the final projections (the classifier's input).
        attention_dim: Width of the attention layer.
        steps: Attention steps (at least 2: the two objects of a relation).
        dropout: Dropout on the question vector, the word features and ``z``.
        counts: Append each step's soft count ``sum_n sigmoid(s_kn) / sqrt(N)`` (for "how many").
        chain: Step ``k``'s query also sees step ``k-1``'s attended feature (stacked attention).
        phrases: Form the queries from the encoder's phrase features (it must have ``phrases: true``) rather
            than from the recurrent states.
        question_query: Add ``W_qa q`` (the whole question, as :class:`~captioning.models.vqa.AttentionFusion`'s
            glimpses) to every step's query, so single-object questions ground before the word attention
            sharpens.
    """

    needs_grid = True
    needs_words = True  # VQAModel passes the question word by word (QuestionWords)

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int, fused_dim: int = 512,
                 attention_dim: int = 256, steps: int = 2, dropout: float = 0.0, counts: bool = True,
                 chain: bool = True, phrases: bool = True, question_query: bool = False) -> None:
        super().__init__()
        if steps < 2:
            raise ValueError(f"RelationalFusion: steps must be >= 2 (two objects to compare), got {steps}")
        self.config = dict(name="relational", question_dim=question_dim, image_dim=image_dim, grid_dim=grid_dim,
                           fused_dim=fused_dim, attention_dim=attention_dim, steps=steps, dropout=dropout,
                           counts=counts, chain=chain, phrases=phrases, question_query=question_query)
        self.steps, self.counts, self.phrases = steps, counts, phrases
        feat_dim = grid_dim + 2  # grid feature + (x, y)
        self.word_score = nn.Linear(question_dim, steps, bias=False)  # w_k: one word attention per step
        self.c_att = nn.Linear(question_dim, steps * attention_dim)  # W_c^k for every step at once
        self.m_att = nn.Linear(feat_dim, attention_dim, bias=False) if chain else None
        self.q_att = nn.Linear(question_dim, attention_dim, bias=False) if question_query else None
        self.g_att = nn.Linear(feat_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)
        z_dim = steps * (feat_dim + (1 if counts else 0)) + (steps - 1) * feat_dim
        self.q_proj, self.z_proj = nn.Linear(question_dim, fused_dim), nn.Linear(z_dim, fused_dim)
        self.drop, self.out_dim = nn.Dropout(dropout), fused_dim
        self.last_weights: Tensor | None = None  # (Q, K, N) grid attention of each step, for inspection
        self.last_word_weights: Tensor | None = None  # (Q, K, T) word attention of each step

    def read_words(self, words: QuestionWords) -> tuple[Tensor, Tensor]:
        """Each step's query: summaries projected by the step's own ``W_c^k`` → (Q, K, A), and the word
        weights (Q, K, T), zero at padding."""
        states = self.drop(words.states)  # (Q, T, H)
        if self.phrases and words.phrases is None:
            raise ValueError("RelationalFusion(phrases=True) needs a question encoder with phrases: true")
        feats = self.drop(words.phrases) if self.phrases else states  # (Q, T, H)
        logits = self.word_score(states).transpose(1, 2)  # (Q, K, T)
        weights = words.softmax(logits)  # (Q, K, T)
        summaries = torch.bmm(weights, feats)  # (Q, K, H)
        queries = self.c_att(summaries).unflatten(-1, (self.steps, -1)).diagonal(dim1=1, dim2=2)  # (Q, A, K)
        return queries.transpose(1, 2), weights  # (Q, K, A), (Q, K, T)

    def attend(self, feats: Tensor, keys: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        """The steps over the grid: ``feats`` (Q, N, D), their projections ``keys`` (Q, N, A) and the steps'
        ``queries`` (Q, K, A) → attended features (Q, K, D) and scores (Q, K, N)."""
        attended, logits, previous = [], [], None
        for k in range(self.steps):
            query = queries[:, k]  # (Q, A)
            if self.m_att is not None and previous is not None:
                query = query + self.m_att(previous)
            scores = self.score(torch.tanh(keys + query.unsqueeze(1))).squeeze(-1)  # (Q, N)
            previous = torch.bmm(scores.softmax(dim=-1).unsqueeze(1), feats).squeeze(1)  # (Q, D)
            attended.append(previous)
            logits.append(scores)
        return torch.stack(attended, dim=1), torch.stack(logits, dim=1)

    def forward(self, q: Tensor, v: Tensor | None, grid: Tensor | None = None,
                words: QuestionWords | None = None) -> Tensor:
        """Fuses question vectors (Q, H) with their images' grids (Q, N, Dg), given the question word by word
        → (Q, F)."""
        if grid is None or words is None:
            raise ValueError("RelationalFusion needs the encoder's grid and the question word by word")
        feats = unit_features(grid, True, "RelationalFusion")  # (Q, N, D)
        queries, word_weights = self.read_words(words)  # (Q, K, A), (Q, K, T)
        if self.q_att is not None:
            queries = queries + self.q_att(self.drop(q)).unsqueeze(1)  # the whole question leads every step
        m, s = self.attend(feats, self.g_att(feats), queries)  # (Q, K, D), (Q, K, N)
        self.last_weights, self.last_word_weights = s.softmax(dim=-1).detach(), word_weights.detach()
        parts = [m.flatten(1), (m[:, :-1] - m[:, 1:]).flatten(1)]  # (Q, K·D), (Q, (K-1)·D): the comparison
        if self.counts:
            parts.append(torch.sigmoid(s).sum(dim=-1) / s.size(-1) ** 0.5)  # (Q, K)
        z = self.drop(torch.cat(parts, dim=-1))  # (Q, Z)
        return torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.z_proj(z))  # (Q, F)
