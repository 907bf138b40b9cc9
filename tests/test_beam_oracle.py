"""Beam search against an exhaustive-search oracle: on a vocabulary small enough to enumerate every caption,
a beam that keeps every hypothesis must return exactly the oracle's n best captions and scores, and a
narrower beam may do worse but never better."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from caption_oracle import all_captions, caption_lengths, caption_log_probs
from captioning.models.decoding import END, PAD, START, beam_search, greedy, sample
from captioning.models.decoder import RNNDecoder

V, D, MAX_LEN, IMAGES = 6, 4, 4, 6  # <PAD> <START> <END> <UNK> + 2 words: 3 generatable words and <END>
CAPTIONS = all_captions(V, MAX_LEN)  # 1 + 3 + 9 + 27 + 81 = 121 captions
EXACT_BEAM = len(CAPTIONS)  # after t steps a beam holds sum_{n<t} 3^n finished + 3^t live hypotheses ≤ 121
ALPHAS, N_BEST = (0.0, 0.8, 2.0), 4


def gnmt(lengths: Tensor, alpha: float) -> Tensor:
    """The GNMT length normalizer ``((5 + len) / 6) ** alpha``, written out independently of the code."""
    return ((5.0 + lengths.double()) / 6.0) ** alpha


def oracle_ranked(decoder: RNNDecoder, v: Tensor, alpha: float) -> Tensor:
    """Every caption's length-normalized score for every image, (B, C)."""
    with torch.no_grad():
        log_probs = caption_log_probs(decoder, v, CAPTIONS, MAX_LEN).double()
    return log_probs / gnmt(caption_lengths(CAPTIONS), alpha)


def caption_index(row: list[int]) -> int:
    """The oracle index of a decoded token row (cut after its ``<END>``; only ``<PAD>`` may follow)."""
    cut = row.index(END) + 1
    assert all(t == PAD for t in row[cut:]), row
    return CAPTIONS.index(tuple(row[:cut]))


@pytest.fixture
def decoder() -> RNNDecoder:
    """A random GRU decoder with its output layer scaled up (next-word distributions far from uniform) and
    <END> made likelier, so that the best captions end at every length (checked below)."""
    torch.manual_seed(3)
    dec = RNNDecoder(V, D, embed_dim=4, hidden_dim=8, cell="gru").eval()
    with torch.no_grad():
        dec.out.weight.mul_(6.0)
        dec.out.bias.mul_(6.0)
        dec.out.bias[END] += 1.0
    return dec


@pytest.fixture
def images() -> Tensor:
    return torch.randn(IMAGES, D, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("beam_size", [EXACT_BEAM, 2 * EXACT_BEAM])  # wider: some beams hold no hypothesis
@pytest.mark.parametrize("alpha", ALPHAS)
def test_exact_beam_returns_the_oracle_n_best(decoder: RNNDecoder, images: Tensor, alpha: float,
                                              beam_size: int) -> None:
    ranked = oracle_ranked(decoder, images, alpha)  # (B, C)
    want_scores, want = ranked.topk(N_BEST, dim=-1)  # (B, n_best)
    out = beam_search(decoder, images, beam_size=beam_size, max_len=MAX_LEN, alpha=alpha, n_best=N_BEST)
    assert out.tokens.shape == (IMAGES, N_BEST, MAX_LEN + 1)
    got = torch.tensor([[caption_index(row) for row in rows] for rows in out.tokens.tolist()])
    assert got.tolist() == want.tolist()
    torch.testing.assert_close(out.scores.double(), want_scores, atol=1e-5, rtol=0)


def test_the_oracle_case_is_not_trivial(decoder: RNNDecoder, images: Tensor) -> None:
    """Guards the fixture: the best captions end early on some images and run to max_len (<END> forced) on
    others, the penalty changes some winners, and no two of the n best are near-tied; so a wrong length in
    the penalty or a dropped finished hypothesis changes the answer of the test above."""
    winners = {alpha: oracle_ranked(decoder, images, alpha).argmax(dim=-1) for alpha in ALPHAS}
    lengths = {len(CAPTIONS[i]) for i in winners[0.0].tolist()}
    assert min(lengths) == 1 and max(lengths) == MAX_LEN + 1
    assert all((winners[alpha] != winners[0.0]).any() for alpha in ALPHAS[1:])
    for alpha in ALPHAS:
        top = oracle_ranked(decoder, images, alpha).topk(N_BEST + 1, dim=-1).values
        assert (top[:, :-1] - top[:, 1:]).min() > 1e-3


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("beam_size", [1, 2, 5, 17])
def test_narrow_beams_never_beat_the_oracle(decoder: RNNDecoder, images: Tensor, beam_size: int,
                                            alpha: float) -> None:
    ranked = oracle_ranked(decoder, images, alpha)  # (B, C)
    out = beam_search(decoder, images, beam_size=beam_size, max_len=MAX_LEN, alpha=alpha)
    got = torch.tensor([caption_index(rows[0]) for rows in out.tokens.tolist()])
    # The reported score is the exact score of the caption returned, which is at most the oracle's best.
    torch.testing.assert_close(out.scores[:, 0].double(), ranked.gather(1, got[:, None]).squeeze(1),
                               atol=1e-5, rtol=0)
    assert (out.scores[:, 0].double() <= ranked.max(dim=-1).values + 1e-5).all()


def test_greedy_and_sample_scores_are_the_oracle_log_probs(decoder: RNNDecoder, images: Tensor) -> None:
    ranked = oracle_ranked(decoder, images, 0.0)  # alpha 0: the plain log-probability
    for out in (greedy(decoder, images, MAX_LEN),
                sample(decoder, images, MAX_LEN, generator=torch.Generator().manual_seed(5))):
        got = torch.tensor([caption_index(row) for row in out.tokens.tolist()])
        torch.testing.assert_close(out.scores.double(), ranked.gather(1, got[:, None]).squeeze(1),
                                   atol=1e-5, rtol=0)


class BigramDecoder:
    """The next word's logits depend only on the previous token: a fixed (V, V) table of log-probabilities."""

    def __init__(self, table: Tensor) -> None:
        self.table = table

    def init_state(self, v: Tensor) -> dict[str, Tensor]:
        return {"unused": v.new_zeros(v.size(0))}

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.table[tokens].clone(), state


def test_greedy_is_trapped_where_the_oracle_and_a_wider_beam_are_not() -> None:
    a, b = 4, 5  # <START> → a (0.6) or b (0.4); after a <END> is 0.3 and every other word less; after b, <END> (0.99)
    probs = torch.full((V, V), 1e-9)
    probs[START, [a, b]] = torch.tensor([0.6, 0.4])
    probs[a, [END, 3, a, b]] = torch.tensor([0.3, 0.7 / 3, 0.7 / 3, 0.7 / 3])
    probs[b, END], probs[b, 3] = 0.99, 0.01
    probs[3, END] = probs[3, 3] = 0.5
    dec, v = BigramDecoder(probs.log()), torch.zeros(1, 1)
    ranked = oracle_ranked(dec, v, 0.0)  # (1, C)
    assert CAPTIONS[ranked.argmax().item()] == (b, END)
    narrow = beam_search(dec, v, beam_size=1, max_len=MAX_LEN)
    assert narrow.tokens[0, 0, 0].item() == a  # greedy commits to the likelier first word …
    assert narrow.scores[0, 0].item() < ranked.max().item() - 0.5  # … and ends far below the optimum
    wide = beam_search(dec, v, beam_size=2, max_len=MAX_LEN)
    assert caption_index(wide.tokens[0, 0].tolist()) == CAPTIONS.index((b, END))
    assert wide.scores[0, 0].item() == pytest.approx(ranked.max().item(), abs=1e-5)
