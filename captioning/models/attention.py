"""Attention captioners: the decoder reads a grid of region features instead of one pooled ``v``.

At each step a soft attention over the ``N`` regions ``g_1 … g_N`` (queried by a hidden state) gives the
context ``z_t = sum_n a_tn g_n`` with ``a_t = softmax_n(w^T tanh(W_k g_n + W_q q_t))``; ``z_t`` enters the
recurrence through its own input matrix, as ``v`` does in the lecture's model::

    h_t = f(W_xh x_t + W_hh h_{t-1} + W_ih z_t)

* ``show_attend_tell`` (Xu et al. 2015): queried by ``h_{t-1}``; ``z_t`` enters every LSTM gate, optionally
  scaled by a gate ``beta_t = sigmoid(W_b h_{t-1})``; ``penalty`` adds the doubly stochastic regularizer
  ``lambda * sum_n (1 - sum_t a_tn)^2`` to the training loss.
* ``att2in`` (Rennie et al. 2017): ``z_t`` enters the LSTM's cell input (the candidate ``g``) only.
* ``updown`` (Anderson et al. 2018): an attention LSTM reads ``[h2_{t-1}; mean(g); x_t]``, its state ``h1_t``
  queries the regions, and a language LSTM reads ``[z_t; h1_t]``; words come from ``h2_t``.

Everything that does not depend on the hidden state is computed once: the region keys ``W_k g`` once per
image, the word terms ``W_xh x_t`` (and ``W_ih mean(g)`` for ``updown``) for all positions in one product.
While decoding, the regions stay one copy per image: each row (a beam, a caption still decoding) carries its
image's index, so beams and finished rows reorder small per-row states only.
Teacher forcing then steps the recurrence with the same per-step function as decoding (so both give the
same logits), and one vocabulary projection covers every position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captioning.models.decoder import DECODERS, check_grid
from captioning.models.decoding import PAD

Regions = dict[str, Tensor]  # per image: "grid" (B, N, D) and its attention "keys" (B, N, A)
State = dict[str, "Tensor | Regions"]  # per row (R, ...), and the images' "regions"


class SoftAttention(nn.Module):
    """Additive attention over regions: keys ``W_k g`` (projected once per image), scores
    ``w^T tanh(keys + W_q q)``, weights a softmax over the regions.

    Args:
        feature_dim: Width of a region feature.
        query_dim: Width of the query (a hidden state).
        attention_dim: Width of the attention layer.
    """

    def __init__(self, feature_dim: int, query_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(feature_dim, attention_dim)
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def keys(self, grid: Tensor) -> Tensor:
        """Region keys (B, N, A) of a grid (B, N, D)."""
        return self.key(grid)

    def forward(self, regions: Regions, query: Tensor, image: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Context (R, D) and weights (R, N) for the queries (R, Q) of R rows.

        Args:
            regions: The images' ``grid`` (B, N, D) and ``keys`` (B, N, A).
            query: One query per row (R, Q).
            image: The image (R,) each row reads (decoding: beams and finished rows move, the regions stay);
                ``None`` when row ``r`` is image ``r``.
        """
        grid, keys, q = regions["grid"], regions["keys"], self.query(query)[:, None, :]  # q: (R, 1, A)
        if image is None:
            hidden = torch.tanh(keys + q)  # (R, N, A)
        else:  # the rows' keys are a fresh tensor: add and tanh in place (the keys are narrower than the grid)
            hidden = keys.index_select(0, image).add_(q).tanh_()  # (R, N, A)
        scores = self.score(hidden).squeeze(-1)  # (R, N)
        weights = scores.softmax(dim=-1)
        if image is None:
            return torch.bmm(weights[:, None, :], grid).squeeze(1), weights  # (R, D), (R, N)
        n = grid.size(1)  # each row's context: a weighted sum of its image's regions, with no per-row copy
        index = image[:, None] * n + torch.arange(n, device=image.device)  # (R, N) rows of grid viewed (B*N, D)
        context = F.embedding_bag(index, grid.reshape(-1, grid.size(-1)), mode="sum",
                                  per_sample_weights=weights.to(grid.dtype))  # autocast may leave them apart
        return context, weights  # (R, D), (R, N)


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM update from the summed gate pre-activations (B, 4H) in ``i, f, g, o`` order."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c  # (B, H), (B, H)


class AttentionDecoder(nn.Module):
    """Shared parts of the attention decoders: words, the attention, the output layer and the teacher-forced
    loop over :meth:`_advance`, the one per-step function that decoding uses too.

    Subclasses implement :meth:`_word_terms` (everything that depends only on the input words and the grid,
    for all positions at once), :meth:`_start` (the initial state) and :meth:`_advance`.

    Args:
        vocab_size: Number of words including the special tokens (linked from the data).
        feature_dim: Width of a region feature (the encoder's grid width, linked from the encoder).
        embed_dim: Word embedding width.
        hidden_dim: Hidden width of the LSTM(s).
        attention_dim: Width of the attention layer.
        dropout: Dropout on embeddings and before the vocabulary projection.
        region_dim: Project every region once per image to this width (a linear layer and a ReLU, as
            ruotianluo's ``att_embed``) before attending; ``None`` attends the encoder's regions as they are.
    """

    needs_grid = True  # the captioner encodes images to their grid (B, N, D) for this decoder

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.0, region_dim: int | None = None) -> None:
        super().__init__()
        self.feature_dim, self.hidden_dim = feature_dim, hidden_dim
        self.region_dim = region_dim or feature_dim  # the width the attention and W_ih read
        self.project = nn.Sequential(nn.Linear(feature_dim, region_dim), nn.ReLU()) if region_dim else None
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)  # W_hy
        self.penalty: Tensor | None = None  # the last teacher-forced pass's regularizer, if the model has one

    @property
    def vocab_size(self) -> int:
        return self.out.out_features

    def check_grid(self, grid: Tensor) -> None:
        """Raises a clear error for anything but a grid (B, N, feature_dim)."""
        check_grid(self.config["name"], self.feature_dim, grid)

    def _word_terms(self, x: Tensor, state: State) -> Tensor:
        """Input terms of every position (embedded words (B, T, E)) that do not depend on a hidden state, given
        the initial state (which holds per-image terms computed once), (B, T, G)."""
        raise NotImplementedError

    def _start(self, grid: Tensor) -> State:
        raise NotImplementedError

    def _advance(self, word_term: Tensor, state: State) -> tuple[Tensor, State]:
        """One step from a position's word term (B, G): the output hidden state (B, H) and the new state
        (whose ``alpha`` holds this step's attention weights, (B, N))."""
        raise NotImplementedError

    def init_state(self, grid: Tensor) -> State:
        """The state before ``<START>``: the regions (the grid and its keys, computed once per image and never
        copied per row: decoding passes the dict through), each row's ``image`` index, zero LSTM states."""
        self.check_grid(grid)
        return {**self._start(grid), "image": torch.arange(grid.size(0), device=grid.device)}

    def _regions(self, grid: Tensor) -> Regions:
        """The regions the rows attend (projected once per image with ``region_dim``) and their keys."""
        grid = grid if self.project is None else self.project(grid)  # (B, N, region_dim)
        return {"grid": grid, "keys": self.attention.keys(grid)}

    def _attend(self, state: State, query: Tensor) -> tuple[Tensor, Tensor]:
        """Context (R, D) and weights (R, N) of the rows' regions for their queries (R, Q)."""
        return self.attention(state["regions"], query, state.get("image"))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Next-token logits (B, V) and the new state, for the previous tokens (B,)."""
        x = self.drop(self.embed(tokens))  # (B, E)
        h, state = self._advance(self._word_terms(x[:, None, :], state)[:, 0], state)
        return self.out(self.drop(h)), state

    def attend(self, grid: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, T, V) and attention weights (B, T, N) for input tokens (B, T)."""
        self.check_grid(grid)
        state = self._start(grid)  # row b is image b: the attention reads the regions with no index
        terms = self._word_terms(self.drop(self.embed(tokens)), state)  # (B, T, G): one product for all t
        hs, alphas = [], []
        # unbind, not terms[:, t]: each slice's backward would write a zero-filled gradient of all positions
        # (15% of an updown training step at the shapes sizes); unbind's backward stacks them once
        for term in terms.unbind(dim=1):
            h, state = self._advance(term, state)
            hs.append(h)
            alphas.append(state["alpha"])
        return self.out(self.drop(torch.stack(hs, dim=1))), torch.stack(alphas, dim=1)

    def forward(self, grid: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced next-token logits (B, T, V) for input tokens ``<START> w_1 … w_n`` (B, T)."""
        logits, alphas = self.attend(grid, tokens)
        self.penalty = self._penalty(alphas, tokens)
        return logits

    def _penalty(self, alphas: Tensor, tokens: Tensor) -> Tensor | None:
        return None


class _OneLSTMAttention(AttentionDecoder):
    """One LSTM queried through ``h_{t-1}`` (show_attend_tell, att2in): the attention, the word and recurrent
    matrices, word terms ``W_xh x_t`` for all positions, and the initial state. Subclasses add ``W_ih`` and
    :meth:`_advance`."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int, hidden_dim: int, attention_dim: int,
                 dropout: float, region_dim: int | None) -> None:
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim, dropout, region_dim)
        self.attention = SoftAttention(self.region_dim, hidden_dim, attention_dim)
        self.w_xh = nn.Linear(embed_dim, 4 * hidden_dim)  # with the LSTM's bias
        self.w_hh = nn.Linear(hidden_dim, 4 * hidden_dim, bias=False)

    def _word_terms(self, x: Tensor, state: State) -> Tensor:
        return self.w_xh(x)  # (B, T, 4H)

    def _start(self, grid: Tensor) -> State:
        zeros = grid.new_zeros(grid.size(0), self.hidden_dim)  # (B, H)
        return {"regions": self._regions(grid), "h": zeros, "c": zeros, "alpha": grid.new_zeros(grid.shape[:2])}


@DECODERS.register("show_attend_tell")
class ShowAttendTell(_OneLSTMAttention):
    """Soft attention queried by ``h_{t-1}``; ``z_t`` enters every gate: ``W_xh x_t + W_hh h_{t-1} + W_ih z_t``.

    Args:
        gate: Scale the context by ``beta_t = sigmoid(W_b h_{t-1})`` (Xu et al.'s gating scalar).
        penalty: ``lambda`` of the doubly stochastic attention regularizer (0 = none; Xu et al. use 1), averaged
            over captions and added to the training loss by the training module.
        **kwargs: :class:`AttentionDecoder`'s options.
    """

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.0, gate: bool = True, penalty: float = 0.0,
                 region_dim: int | None = None) -> None:
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim, dropout, region_dim)
        self.config = dict(name="show_attend_tell", vocab_size=vocab_size, feature_dim=feature_dim,
                           embed_dim=embed_dim, hidden_dim=hidden_dim, attention_dim=attention_dim, dropout=dropout,
                           gate=gate, penalty=penalty, region_dim=region_dim)
        self.w_ih = nn.Linear(self.region_dim, 4 * hidden_dim, bias=False)
        self.w_beta = nn.Linear(hidden_dim, 1) if gate else None
        self.lam = penalty

    def _advance(self, word_term: Tensor, state: State) -> tuple[Tensor, State]:
        h = state["h"]
        z, alpha = self._attend(state, h)  # (B, D), (B, N)
        if self.w_beta is not None:
            z = torch.sigmoid(self.w_beta(h)) * z
        h, c = lstm_update(word_term + self.w_hh(h) + self.w_ih(z), state["c"])
        return h, {**state, "h": h, "c": c, "alpha": alpha}

    def _penalty(self, alphas: Tensor, tokens: Tensor) -> Tensor | None:
        if not self.lam:
            return None
        mask = (tokens != PAD).to(alphas.dtype)[:, :, None]  # (B, T, 1): <PAD> positions predict nothing
        return self.lam * ((1.0 - (alphas * mask).sum(dim=1)) ** 2).sum(dim=1).mean()


@DECODERS.register("att2in")
class Att2in(_OneLSTMAttention):
    """Soft attention queried by ``h_{t-1}``; ``z_t`` enters the LSTM's cell input only:
    ``g_t = tanh(W_xh^g x_t + W_hh^g h_{t-1} + W_ih z_t)``, the gates ``i, f, o`` see words and ``h`` alone.

    Args:
        **kwargs: :class:`AttentionDecoder`'s options.
    """

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.0, region_dim: int | None = None) -> None:
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim, dropout, region_dim)
        self.config = dict(name="att2in", vocab_size=vocab_size, feature_dim=feature_dim, embed_dim=embed_dim,
                           hidden_dim=hidden_dim, attention_dim=attention_dim, dropout=dropout, region_dim=region_dim)
        self.w_ih = nn.Linear(self.region_dim, hidden_dim, bias=False)  # into the cell input g only

    def _advance(self, word_term: Tensor, state: State) -> tuple[Tensor, State]:
        h = state["h"]
        z, alpha = self._attend(state, h)  # (B, D), (B, N)
        i, f, g, o = (word_term + self.w_hh(h)).chunk(4, dim=-1)  # (B, H) each
        h, c = lstm_update(torch.cat([i, f, g + self.w_ih(z), o], dim=-1), state["c"])  # z into g only
        return h, {**state, "h": h, "c": c, "alpha": alpha}


@DECODERS.register("updown")
class UpDown(AttentionDecoder):
    """Bottom-up/top-down decoder: an attention LSTM over ``[h2_{t-1}; mean(g); x_t]`` whose state queries the
    regions, and a language LSTM over ``[z_t; h1_t]`` (each input through its own matrix).

    Args:
        **kwargs: :class:`AttentionDecoder`'s options (``hidden_dim`` is the width of both LSTMs).
    """

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.0, region_dim: int | None = None) -> None:
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim, dropout, region_dim)
        self.config = dict(name="updown", vocab_size=vocab_size, feature_dim=feature_dim, embed_dim=embed_dim,
                           hidden_dim=hidden_dim, attention_dim=attention_dim, dropout=dropout, region_dim=region_dim)
        g4, d = 4 * hidden_dim, self.region_dim
        self.attention = SoftAttention(d, hidden_dim, attention_dim)
        self.att_x, self.att_v = nn.Linear(embed_dim, g4), nn.Linear(d, g4, bias=False)
        self.att_h2, self.att_hh = nn.Linear(hidden_dim, g4, bias=False), nn.Linear(hidden_dim, g4, bias=False)
        self.lang_z, self.lang_h1 = nn.Linear(d, g4), nn.Linear(hidden_dim, g4, bias=False)
        self.lang_hh = nn.Linear(hidden_dim, g4, bias=False)

    def _word_terms(self, x: Tensor, state: State) -> Tensor:
        return self.att_x(x) + state["mean_term"][:, None, :]  # (B, T, 4H): W x_t + W mean(g)

    def _start(self, grid: Tensor) -> State:
        zeros = grid.new_zeros(grid.size(0), self.hidden_dim)  # (B, H)
        regions = self._regions(grid)
        return {"regions": regions, "mean_term": self.att_v(regions["grid"].mean(dim=1)),
                "h1": zeros, "c1": zeros, "h2": zeros, "c2": zeros, "alpha": grid.new_zeros(grid.shape[:2])}

    def _advance(self, word_term: Tensor, state: State) -> tuple[Tensor, State]:
        h1, c1 = lstm_update(word_term + self.att_h2(state["h2"]) + self.att_hh(state["h1"]), state["c1"])
        z, alpha = self._attend(state, h1)  # (B, D), (B, N)
        h2, c2 = lstm_update(self.lang_z(z) + self.lang_h1(h1) + self.lang_hh(state["h2"]), state["c2"])
        return h2, {**state, "h1": h1, "c1": c1, "h2": h2, "c2": c2, "alpha": alpha}
