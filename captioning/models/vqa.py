"""VQA models: a recurrent question encoder, image–question fusion and an answer classifier.

* :class:`QuestionEncoder` — word embeddings through the captioner's cells (``rnn_tanh``, ``rnn_relu``,
  ``lstm``, ``gru``; one fused call), the last layer's state at each question's last token.
* :class:`ProductFusion` — "deeper LSTM Q + norm I" (Antol et al. 2015; Lu et al. 2015): the L2-normalized
  pooled image feature and the question vector are each mapped by a tanh layer to a common width and
  multiplied element-wise. The normalized feature is multiplied by ``sqrt(D)`` (unit mean square per
  component): with PyTorch's default initialization an unscaled unit vector gives near-zero products and the
  question path barely learns.
* :class:`AttentionFusion` — glimpses of question-guided soft attention over the encoder's spatial grid
  (Yang et al. 2016; several glimpses as Kazemi & Elqursh 2017): ``a_kn = softmax_n(w_k^T tanh(W_g g_n +
  W_q q))``, optionally with coordinate channels and soft counts; the attended features are fused with ``q``
  by an element-wise product of tanh projections.
* :class:`~captioning.models.film.FiLMFusion` (``film``) — the question scales and shifts the channels of
  residual convolution blocks over the grid (Perez et al. 2018), for questions relating two objects.
* :class:`~captioning.models.relational.RelationalFusion` (``relational``) — several attention steps over the
  grid, each led by its own word-attention summary of the question (:class:`QuestionWords`: which words from
  the recurrent states, what to look for from local phrase features); the steps' attended features and their
  differences are fused with the question, for questions relating two objects.
* :class:`GroundedFusion` (``grounded``, the shapes default) — :class:`AttentionFusion`'s glimpses plus
  :class:`~captioning.models.grounded.WordGrounding`: every phrase of the question attends over the grid by
  itself, and signed word gates combine the phrases' readings (the first object's position minus the
  second's), for questions relating two objects; with ``pointers`` each glimpse's query also gets a phrase
  that its own order-aware pointer picks (:class:`~captioning.models.grounded.PhrasePointers`); with
  ``word_relations`` every phrase finds its place by a grounding objective of its own and
  gates from each word and the whole question compare the places
  (:class:`~captioning.models.grounded.WordRelations`).
* :class:`VQAModel` — encoder → fusion → classifier (an MLP over the answer vocabulary).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.cells import build_rnn, check_cell, run_fused
from captioning.models.film import FiLMFusion, unit_features
from captioning.models.question_words import QuestionWords
from captioning.models.grounded import PhrasePointers, WordGrounding, WordRelations
from captioning.models.relational import RelationalFusion
from captioning.core.registry import Registry

QUESTION_ENCODERS: Registry[nn.Module] = Registry("question encoder")
FUSIONS: Registry[nn.Module] = Registry("fusion")
PHRASE_WINDOW = 2  # a word and the one before it: "red circle", "blue square"

QuestionEncoderFactory = Callable[[int], nn.Module]  # (question vocabulary size) -> question encoder
FusionFactory = Callable[[int, int, int], nn.Module]  # (question dim, pooled image dim, grid dim) -> fusion


@QUESTION_ENCODERS.register("rnn")
class QuestionEncoder(nn.Module):
    """Embeds question tokens and runs a recurrent cell over them.

    Args:
        vocab_size: Question vocabulary size (linked from the data).
        embed_dim: Word embedding width.
        hidden_dim: Hidden width of every layer (the question vector's width).
        cell: ``rnn_tanh``, ``rnn_relu``, ``lstm`` or ``gru``.
        num_layers: Stacked recurrent layers.
        dropout: Dropout on embeddings and between layers.
        phrases: Also compute local phrase features (a width-2 convolution over the embeddings, ``tanh``,
            ``hidden_dim`` wide) for :class:`QuestionWords`.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 300, hidden_dim: int = 512, cell: str = "lstm",
                 num_layers: int = 1, dropout: float = 0.0, phrases: bool = False) -> None:
        super().__init__()
        self.config = dict(name="rnn", vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim,
                           cell=check_cell(cell), num_layers=num_layers, dropout=dropout, phrases=phrases)
        self.cell, self.out_dim = check_cell(cell), hidden_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = build_rnn(cell, embed_dim, hidden_dim, num_layers, dropout)
        self.phrase = nn.Conv1d(embed_dim, hidden_dim, PHRASE_WINDOW) if phrases else None

    def forward(self, tokens: Tensor, lengths: Tensor,
                return_words: bool = False) -> Tensor | tuple[Tensor, QuestionWords]:
        """Question vectors, and optionally the question word by word.

        Args:
            tokens: Right-padded token ids, (Q, T).
            lengths: Number of real tokens of each question, (Q,).
            return_words: Also return every token's state (and phrase feature) with the padding mask.

        Returns:
            The last layer's output at each question's last real token, (Q, H); with ``return_words`` the pair
            ``(q, QuestionWords)``.
        """
        x = self.drop(torch.tanh(self.embed(tokens)))  # (Q, T, E)
        out, _ = run_fused(self.cell, self.rnn, x)  # (Q, T, H); padding comes after, so it cannot leak in
        lengths = lengths.to(out.device)
        q = out[torch.arange(out.size(0), device=out.device), (lengths - 1).clamp(min=0)]  # (Q, H)
        if not return_words:
            return q
        mask = torch.arange(out.size(1), device=out.device) < lengths.unsqueeze(1)  # (Q, T)
        phrases = None
        if self.phrase is not None:  # left-padded: token t sees tokens t-1 and t only
            window = F.pad(x.transpose(1, 2), (PHRASE_WINDOW - 1, 0))  # (Q, E, T + 1)
            phrases = torch.tanh(self.phrase(window)).transpose(1, 2)  # (Q, T, H)
        return q, QuestionWords(out, phrases, mask, tokens)


@FUSIONS.register("product")
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
        self.config = dict(name="product", question_dim=question_dim, image_dim=image_dim, grid_dim=grid_dim,
                           fused_dim=fused_dim, dropout=dropout)
        self.q_proj, self.v_proj = nn.Linear(question_dim, fused_dim), nn.Linear(image_dim, fused_dim)
        self.drop, self.out_dim = nn.Dropout(dropout), fused_dim

    def forward(self, q: Tensor, v: Tensor, grid: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with their images' pooled features (Q, Dv) → (Q, F)."""
        v = F.normalize(v, dim=-1) * v.size(-1) ** 0.5  # unit L2 norm, rescaled to unit mean square
        return torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.v_proj(self.drop(v)))  # (Q, F)


@FUSIONS.register("attention")
class AttentionFusion(nn.Module):
    """Question-guided soft attention over the spatial grid (one or more glimpses), then a product fusion.

    Each grid feature is L2-normalized and rescaled to unit mean square; with ``coordinates`` its position
    ``(x, y)`` in [-1, 1] is appended (CoordConv-style), so an attended feature says *where* the attended thing
    is and two glimpses can compare positions ("is the red circle left of the blue square?"). Glimpse ``k``
    has its own scores ``s_kn = w_k^T tanh(W_g g_n + W_q q)``, weights ``softmax_n(s_kn)`` and attended
    feature ``sum_n a_kn g_n``. With ``multiplicative`` the scores are ``w_k^T (tanh(W_g g_n) * tanh(W_q q))``:
    the question gates every unit of the key, so the attention depends on the question from the first step.
    In the additive form the question's first-order term ``w_k^T W_q q`` is the same at every position and
    cancels in the softmax; only the tanh's curvature lets the question move the attention, which it barely
    does at initialization. With ``counts`` each glimpse also contributes ``sum_n sigmoid(s_kn) / sqrt(N)``,
    a soft count of matching positions that softmax weights (summing to 1) cannot express; the scale keeps it
    near a feature component's size at initialization (an unscaled ``N/2`` saturates the tanh). The glimpses (and
    counts) are concatenated to ``z``, and ``tanh(W_q' q) * tanh(W_z z)`` is the fused vector. With ``compare``
    every pair of glimpses ``k < l`` adds its offset ``o = (x, y)_k - (x, y)_l`` (attended positions), each
    component times its own question gate: ``+ sum_c o_c tanh(W_c q)``. A relation's answer is "left or right" (in
    ``q``) times "which side" (the offset): inside ``tanh(W_z z)`` both factors are learned and neither predicts
    the answer alone; here the offset is given, and the gates learn from the first step.

    Args:
        question_dim: Width of the question vector.
        image_dim: Width of the pooled feature ``v`` (unused: the attended grid replaces it).
        grid_dim: Width of each grid position's feature.
        fused_dim: Common width of the projections.
        attention_dim: Width of the attention layer.
        dropout: Dropout on the inputs.
        glimpses: Number of attention distributions (Kazemi & Elqursh 2017 use 2).
        coordinates: Append each position's coordinates to its grid feature (needs a square grid).
        counts: Append each glimpse's soft count.
        multiplicative: Multiplicative scores (the key's units gated by the question's) instead of additive.
        compare: Add every pair of glimpses' position offset, gated by the question (needs coordinates and
            at least 2 glimpses).
        product: Fuse the glimpses' features with the question (``tanh(W_q' q) * tanh(W_z z)``); ``False``
            keeps only the compared offsets (needs ``compare``; the glimpses then only say where they look).
    """

    needs_grid = True

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int, fused_dim: int = 1024,
                 attention_dim: int = 512, dropout: float = 0.0, glimpses: int = 1, coordinates: bool = False,
                 counts: bool = False, multiplicative: bool = False, compare: bool = False,
                 product: bool = True) -> None:
        super().__init__()
        if glimpses < 1:
            raise ValueError(f"AttentionFusion: glimpses must be >= 1, got {glimpses}")
        if compare and (not coordinates or glimpses < 2):
            raise ValueError("AttentionFusion: compare: true needs coordinates: true and glimpses >= 2, got "
                             f"coordinates: {coordinates}, glimpses: {glimpses}")
        if not product and (counts or not compare):
            raise ValueError("AttentionFusion: product: false fuses only the compared offsets, so it needs "
                             f"compare: true and counts: false, got compare: {compare}, counts: {counts}")
        self.config = dict(name="attention", question_dim=question_dim, image_dim=image_dim, grid_dim=grid_dim,
                           fused_dim=fused_dim, attention_dim=attention_dim, dropout=dropout, glimpses=glimpses,
                           coordinates=coordinates, counts=counts, multiplicative=multiplicative, compare=compare,
                           product=product)
        self.glimpses, self.coordinates, self.counts = glimpses, coordinates, counts
        self.multiplicative = multiplicative
        feat_dim = grid_dim + (2 if coordinates else 0)
        self.g_att, self.q_att = nn.Linear(feat_dim, attention_dim), nn.Linear(question_dim, attention_dim)
        self.score = nn.Linear(attention_dim, glimpses)
        z_dim = glimpses * (feat_dim + (1 if counts else 0))
        self.q_proj, self.z_proj = (nn.Linear(question_dim, fused_dim), nn.Linear(z_dim, fused_dim)) if product \
            else (None, None)
        self.drop, self.out_dim = nn.Dropout(dropout), fused_dim
        self.pairs = [(k, l) for k in range(glimpses) for l in range(k + 1, glimpses)] if compare else []
        self.compare_proj = nn.Linear(question_dim, 2 * len(self.pairs) * fused_dim) if compare else None
        self.last_weights: Tensor | None = None  # (Q, N) for one glimpse, (Q, K, N) for several; for inspection

    def features(self, grid: Tensor) -> Tensor:
        """Normalized grid features (Q, N, Dg), with coordinates appended if configured → (Q, N, Dg[+2])."""
        return unit_features(grid, self.coordinates, "AttentionFusion(coordinates=True)")

    def forward(self, q: Tensor, v: Tensor, grid: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with their images' grids (Q, N, Dg) → (Q, F)."""
        if grid is None:
            raise ValueError("AttentionFusion needs the encoder's grid")
        return self.fuse(q, self.features(grid))

    def fuse(self, q: Tensor, feats: Tensor, offsets: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, Dq) with already normalized grid features (Q, N, D) (:meth:`features`)
        → (Q, F); ``offsets`` as in :meth:`read`."""
        z, weights = self.read(q, feats, offsets)  # (Q, K·(D[+1])), (Q, K, N)
        self.last_weights = (weights.squeeze(1) if self.glimpses == 1 else weights).detach()
        parts = [] if self.q_proj is None else [
            torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.z_proj(self.drop(z)))]  # (Q, F)
        if self.compare_proj is not None:
            read = z.unflatten(1, (self.glimpses, -1))  # (Q, K, D[+1]): each glimpse's reading, its (x, y) last
            width = read.size(-1) - (1 if self.counts else 0)
            parts.append(self.compare(q, read[..., width - 2:width]))
        return sum(parts[1:], parts[0])  # (Q, F)

    def compare(self, q: Tensor, where: Tensor) -> Tensor:
        """Every pair of glimpses' offset (Q, P·2) from their attended (x, y) (Q, K, 2), each component times its
        question gate, summed → (Q, F)."""
        first, second = zip(*self.pairs)
        offsets = (where[:, list(first)] - where[:, list(second)]).flatten(1)  # (Q, P·2)
        gates = torch.tanh(self.compare_proj(self.drop(q))).view(q.size(0), offsets.size(1), -1)  # (Q, P·2, F)
        return (offsets.unsqueeze(-1) * gates).sum(1)  # (Q, F)

    def interact(self, keys: Tensor, queries: Tensor) -> Tensor:
        """The attention layer's hidden units from projected keys and queries (broadcast)."""
        if self.multiplicative:
            return torch.tanh(keys) * torch.tanh(queries)
        return torch.tanh(keys + queries)

    def read(self, query: Tensor, feats: Tensor, offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The glimpses that ``query`` (Q, Dq) takes of normalized grid features (Q, N, D): their attended
        features (only the coordinates with ``product: false``; and soft counts) z (Q, K·(D[+1])) and weights
        (Q, K, N). ``offsets`` (Q, K, A), if given, are
        added to each glimpse's projected query."""
        keys, queries = self.g_att(feats), self.q_att(query)  # (Q, N, A), (Q, A)
        if offsets is None:
            logits = self.score(self.interact(keys, queries.unsqueeze(1))).transpose(1, 2)  # (Q, K, N)
        else:  # glimpse k's own query
            hidden = self.interact(keys.unsqueeze(1), (queries.unsqueeze(1) + offsets).unsqueeze(2))  # (Q, K, N, A)
            logits = torch.einsum("qkna,ka->qkn", hidden, self.score.weight)  # (Q, K, N)
            logits = logits + self.score.bias.unsqueeze(-1)
        weights = logits.softmax(dim=-1)
        values = feats if self.z_proj is not None else feats[..., -2:]  # product: false reads where it looks only
        parts = [torch.bmm(weights, values)]  # (Q, K, D) or (Q, K, 2)
        if self.counts:
            parts.append(torch.sigmoid(logits).sum(dim=-1, keepdim=True) / logits.size(-1) ** 0.5)  # (Q, K, 1)
        return torch.cat(parts, dim=-1).flatten(1), weights  # (Q, K * (D [+1])), (Q, K, N)


@FUSIONS.register("grounded")
class GroundedFusion(nn.Module):
    """:class:`AttentionFusion`'s glimpses plus word grounding (:class:`~captioning.models.grounded.WordGrounding`):
    every phrase of the question finds its object, and signed word gates compare them (``r_A - r_B``).

    The two paths meet the question in their own products, summed: ``AttentionFusion(q, grid) +
    tanh(W_q' q) * tanh(W_d d)`` (plus ``W rho``, the word relations' gated places, with ``word_relations``). The
    word path reads the grid *detached* by default, so the image encoder learns from the glimpses alone, as in the
    attention model, and the words ground in the features it learns.

    Args:
        question_dim: Width of the question vector, of the word states and of the phrase features.
        image_dim: Width of the pooled feature ``v`` (unused: the attended grid replaces it).
        grid_dim: Width of each grid position's feature.
        fused_dim: Common width of the final projections (the classifier's input).
        attention_dim: Width of the glimpses' attention layer.
        word_attention_dim: Width of the word grounding's queries and keys.
        glimpses: Whole-question glimpses (with coordinates and soft counts); 0 for the word path alone.
        heads: Signed word combinations ``d_k``.
        key_hidden: Hidden width of an MLP computing the grounding's keys (0: a linear map).
        detach_grid: The word path (and the relation glimpses) do not train the image encoder.
        dropout: Dropout on the inputs of every projection.
        pointers: Each glimpse's query also gets the phrase that its own order-aware pointer picks
            (:class:`~captioning.models.grounded.PhrasePointers`; needs ``glimpses`` > 0).
        multiplicative: The glimpses' scores multiply key and question units (:class:`AttentionFusion`).
        compare: The glimpses' position offsets, gated by the question, are added (:class:`AttentionFusion`).
        relation_glimpses: A separate set of this many whole-question glimpses (0: none, else >= 2) over the grid
            (detached with ``detach_grid``), used only for their compared position offsets
            (``AttentionFusion(compare=True, product=False)``): kept out of the glimpses that answer colour,
            shape and counts, they can settle on the two objects that a relation question names.
        word_relations: Heads of :class:`~captioning.models.grounded.WordRelations` (0: none): every phrase finds
            its place, trained by its own grounding objective, and gates from each word's state and the whole
            question sum the places; ``W rho`` is added to the fused vector (the grid read as the word path does).
        grounding_weight: Weight of the word relations' grounding objective in the training loss.
        grounding_buckets: Classes of that objective's word prediction (word ids modulo this).
    """

    needs_grid = True
    needs_words = True  # VQAModel passes the question word by word (QuestionWords)

    def __init__(self, question_dim: int, image_dim: int, grid_dim: int, fused_dim: int = 512,
                 attention_dim: int = 256, word_attention_dim: int = 128, glimpses: int = 2, heads: int = 4,
                 key_hidden: int = 0, read_features: bool = True, detach_grid: bool = True,
                 dropout: float = 0.0, pointers: bool = False, multiplicative: bool = False,
                 compare: bool = False, relation_glimpses: int = 0, word_relations: int = 0,
                 grounding_weight: float = 1.0, grounding_buckets: int = 64) -> None:
        super().__init__()
        if glimpses < 0:
            raise ValueError(f"GroundedFusion: glimpses must be >= 0, got {glimpses}")
        if pointers and not glimpses:
            raise ValueError("GroundedFusion: pointers: true needs glimpses (it points for them), got glimpses: 0")
        if compare and not glimpses:
            raise ValueError("GroundedFusion: compare: true needs glimpses (it compares them), got glimpses: 0")
        if relation_glimpses < 0 or relation_glimpses == 1:
            raise ValueError("GroundedFusion: relation_glimpses must be 0 or >= 2 (they are compared in pairs), "
                             f"got {relation_glimpses}")
        if word_relations < 0:
            raise ValueError(f"GroundedFusion: word_relations must be >= 0 (0: none), got {word_relations}")
        self.config = dict(name="grounded", question_dim=question_dim, image_dim=image_dim, grid_dim=grid_dim,
                           fused_dim=fused_dim, attention_dim=attention_dim, word_attention_dim=word_attention_dim,
                           glimpses=glimpses, heads=heads, key_hidden=key_hidden, read_features=read_features,
                           detach_grid=detach_grid, dropout=dropout, pointers=pointers,
                           multiplicative=multiplicative, compare=compare, relation_glimpses=relation_glimpses,
                           word_relations=word_relations, grounding_weight=grounding_weight,
                           grounding_buckets=grounding_buckets)
        self.attention = AttentionFusion(question_dim, image_dim, grid_dim, fused_dim, attention_dim, dropout,
                                         glimpses, coordinates=True, counts=True,
                                         multiplicative=multiplicative, compare=compare) if glimpses else None
        self.words = WordGrounding(question_dim, grid_dim + 2, word_attention_dim, heads, key_hidden,
                                   read_features)
        self.q_proj, self.d_proj = nn.Linear(question_dim, fused_dim), nn.Linear(self.words.out_dim, fused_dim)
        self.detach_grid, self.drop, self.out_dim = detach_grid, nn.Dropout(dropout), fused_dim
        self.pointers = PhrasePointers(question_dim, attention_dim, glimpses) if pointers else None
        self.relations = AttentionFusion(question_dim, image_dim, grid_dim, fused_dim, attention_dim, dropout,
                                         relation_glimpses, coordinates=True, compare=True, product=False) \
            if relation_glimpses else None
        self.word_relations = WordRelations(question_dim, grid_dim + 2, word_relations,
                                            grounding_weight=grounding_weight,
                                            grounding_buckets=grounding_buckets) if word_relations else None
        self.relation_proj = nn.Linear(2 * word_relations, fused_dim) if word_relations else None

    @property
    def last_weights(self) -> Tensor | None:
        """The glimpses' attention (Q, K, N) of the last call, for inspection (``None`` without glimpses)."""
        return None if self.attention is None else self.attention.last_weights

    def image_features(self, grid: Tensor) -> Tensor:
        """The grid features that both paths read: L2-normalized, with each cell's (x, y) (..., N, Dg) →
        (..., N, Dg + 2). They do not depend on the question, so :class:`VQAModel` computes them once per image."""
        return unit_features(grid, True, "GroundedFusion")

    def forward(self, q: Tensor, v: Tensor | None, grid: Tensor | None = None,
                words: QuestionWords | None = None, feats: Tensor | None = None) -> Tensor:
        """Fuses question vectors (Q, H) with their images' grids (Q, N, Dg), or with the grids'
        :meth:`image_features` (Q, N, Dg + 2) if given instead, and the question word by word → (Q, F)."""
        if (grid is None and feats is None) or words is None:
            raise ValueError("GroundedFusion needs the encoder's grid and the question word by word")
        feats = self.image_features(grid) if feats is None else feats  # (Q, N, D): for both paths
        side = feats.detach() if self.detach_grid else feats  # what the word path (and relation glimpses) read
        d = self.words(side, words)  # (Q, K·(D+1)): signed sums
        fused = torch.tanh(self.q_proj(self.drop(q))) * torch.tanh(self.d_proj(self.drop(d)))  # (Q, F)
        if self.relations is not None:
            fused = fused + self.relations.fuse(q, side)
        if self.word_relations is not None:
            fused = fused + self.relation_proj(self.word_relations(side, words, q))  # (Q, F)
        if self.attention is None:
            return fused
        offsets = None if self.pointers is None else self.pointers(words)  # (Q, K, A)
        return fused + self.attention.fuse(q, feats, offsets)


FUSIONS.register("film")(FiLMFusion)  # question-conditioned convolutions over the grid (models/film.py)
FUSIONS.register("relational")(RelationalFusion)  # multi-step attention led by the question's words


class VQAModel(nn.Module):
    """Encoder → question encoder → fusion → classifier over the answer vocabulary.

    Args:
        encoder: Image encoder returning ``(v, grid)``.
        question_encoder: A built question encoder with ``out_dim``.
        fusion: A built fusion module with ``out_dim`` and ``needs_grid``; one whose ``needs_words`` is true also
            gets the question word by word (``words=``, a :class:`QuestionWords`); one with an ``image_features``
            method gets that of each image's grid (``feats=``, gathered per question) instead of the grid.
        num_answers: Number of answer classes.
        hidden_dim: Width of the classifier's hidden layer.
        dropout: Dropout before each classifier layer.
    """

    def __init__(self, encoder: nn.Module, question_encoder: nn.Module, fusion: nn.Module, num_answers: int,
                 hidden_dim: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder, self.question_encoder, self.fusion = encoder, question_encoder, fusion
        self.config = dict(hidden_dim=hidden_dim, dropout=dropout)
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
        extra = {}
        if grid is not None and hasattr(self.fusion, "image_features"):  # its per-cell work, once per image
            extra["feats"], grid = self.fusion.image_features(grid)[owner], None  # (Q, N, D)
        grid = None if grid is None else grid[owner]  # (Q, N, Dg)
        if getattr(self.fusion, "needs_words", False):  # fusions that read the question word by word
            q, extra["words"] = self.question_encoder(tokens, lengths, return_words=True)  # (Q, H), QuestionWords
        else:
            q = self.question_encoder(tokens, lengths)  # (Q, H)
        return self.classifier(self.fusion(q, v[owner], grid, **extra))  # (Q, A)

    def take_auxiliary_loss(self) -> Tensor | None:
        """The training objectives that submodules set in the last forward pass (their ``auxiliary_loss``, such as
        :class:`~captioning.models.grounded.WordRelations`' grounding), summed and cleared; ``None`` if none."""
        owners = [m for m in self.modules() if isinstance(getattr(m, "auxiliary_loss", None), Tensor)]
        losses = [m.auxiliary_loss for m in owners]
        for m in owners:
            m.auxiliary_loss = None
        return sum(losses[1:], losses[0]) if losses else None


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


def vqa_model_meta(model: VQAModel) -> dict:
    """The plain-data description of a VQA model's components (stored in checkpoints)."""
    return {"encoder": dict(model.encoder.config), "question_encoder": dict(model.question_encoder.config),
            "fusion": dict(model.fusion.config), "classifier": dict(model.config)}


def create_vqa_model(meta: dict, num_answers: int) -> VQAModel:
    """Rebuilds a VQA model (untrained weights) from :func:`vqa_model_meta`'s description."""
    from captioning.models.encoders import build_encoder

    return VQAModel(build_encoder(meta["encoder"], from_checkpoint=True),
                    QUESTION_ENCODERS.build(meta["question_encoder"]), FUSIONS.build(meta["fusion"]), num_answers,
                    **meta["classifier"])
