"""Greedy, sampling and batched beam search over the decoder's step."""

import pytest
import torch

from captioning.models.decoding import END, PAD, START, beam_search, greedy, sample
from captioning.models.decoder import RNNDecoder

V, D = 15, 8


@pytest.fixture
def decoder() -> RNNDecoder:
    return RNNDecoder(V, D, embed_dim=8, hidden_dim=16, cell="gru").eval()


class ScriptedDecoder:
    """Emits a fixed token sequence per image (then <END>), to test stopping without a trained model."""

    def __init__(self, scripts: list[list[int]]) -> None:
        self.scripts = scripts

    def init_state(self, v):
        return {"row": torch.arange(v.size(0)), "t": torch.zeros(v.size(0), dtype=torch.long)}

    def step(self, tokens, state):
        logits = torch.full((tokens.size(0), V), -5.0)
        for i, (row, t) in enumerate(zip(state["row"].tolist(), state["t"].tolist())):
            script = self.scripts[row] + [END]
            logits[i, script[min(t, len(script) - 1)]] = 5.0
        return logits, {"row": state["row"], "t": state["t"] + 1}


def test_beam_size_one_equals_greedy(decoder: RNNDecoder) -> None:
    v = torch.randn(6, D)
    g, b = greedy(decoder, v, max_len=12), beam_search(decoder, v, beam_size=1, max_len=12)
    assert torch.equal(b.tokens[:, 0], g.tokens)
    torch.testing.assert_close(b.scores[:, 0], g.scores)


def test_batched_beam_equals_per_image_beam(decoder: RNNDecoder) -> None:
    v = torch.randn(5, D)
    batched = beam_search(decoder, v, beam_size=4, max_len=10, alpha=0.7, n_best=2)
    for i in range(5):
        single = beam_search(decoder, v[i : i + 1], beam_size=4, max_len=10, alpha=0.7, n_best=2)
        t = single.tokens.size(-1)
        assert torch.equal(batched.tokens[i, :, :t], single.tokens[0])
        assert (batched.tokens[i, :, t:] == PAD).all()
        torch.testing.assert_close(batched.scores[i], single.scores[0])


def test_beam_search_finds_a_better_sequence_than_greedy(decoder: RNNDecoder) -> None:
    v = torch.randn(32, D)
    g = greedy(decoder, v, max_len=8)
    b = beam_search(decoder, v, beam_size=5, max_len=8)
    assert (b.scores[:, 0] >= g.scores - 1e-5).all()  # alpha=0: beam maximizes the same log-probability
    assert (b.scores[:, 0] > g.scores + 1e-4).any()


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_each_image_stops_at_its_own_end(decode: str) -> None:
    scripts = [[5], [6, 7, 8], [], [9, 9, 9, 9, 9]]
    dec, v = ScriptedDecoder(scripts), torch.zeros(4, 1)
    if decode == "greedy":
        tokens = greedy(dec, v, max_len=10).tokens
    elif decode == "beam":
        tokens = beam_search(dec, v, beam_size=3, max_len=10).tokens[:, 0]
    else:
        tokens = sample(dec, v, max_len=10, temperature=0.1, generator=torch.Generator().manual_seed(0)).tokens
    assert tokens.size(1) == 6  # the loop ends when the longest caption ends
    for row, script in zip(tokens.tolist(), scripts):
        assert row[: len(script) + 1] == script + [END]
        assert all(t == PAD for t in row[len(script) + 1 :])


def test_max_len_forces_end(decoder: RNNDecoder) -> None:
    dec = ScriptedDecoder([[5] * 50])
    tokens = greedy(dec, torch.zeros(1, 1), max_len=7).tokens
    assert tokens.tolist() == [[5] * 7 + [END]]
    tokens = beam_search(dec, torch.zeros(1, 1), beam_size=2, max_len=7).tokens
    assert tokens[0, 0].tolist() == [5] * 7 + [END]


@pytest.mark.parametrize("decode", [greedy, sample, beam_search])
def test_never_emits_pad_or_start(decoder: RNNDecoder, decode) -> None:
    # Make <PAD> and <START> the most likely outputs: they must still never appear before <END>.
    with torch.no_grad():
        decoder.out.bias[PAD] = 50.0
        decoder.out.bias[START] = 50.0
    tokens = decode(decoder, torch.randn(8, D), max_len=6).tokens
    tokens = tokens[:, 0] if tokens.dim() == 3 else tokens
    for row in tokens.tolist():
        body = row[: row.index(END)] if END in row else row
        assert PAD not in body and START not in body


def test_sampling_is_seeded_and_top_k_restricts(decoder: RNNDecoder) -> None:
    v = torch.randn(16, D)
    a = sample(decoder, v, max_len=8, generator=torch.Generator().manual_seed(3)).tokens
    b = sample(decoder, v, max_len=8, generator=torch.Generator().manual_seed(3)).tokens
    assert torch.equal(a, b)
    top1 = sample(decoder, v, max_len=8, top_k=1, generator=torch.Generator().manual_seed(4)).tokens
    assert torch.equal(top1, greedy(decoder, v, max_len=8).tokens)
    with pytest.raises(ValueError, match="temperature"):
        sample(decoder, v, temperature=0.0)


def test_n_best_is_sorted_and_validated(decoder: RNNDecoder) -> None:
    out = beam_search(decoder, torch.randn(3, D), beam_size=4, max_len=6, n_best=3)
    assert out.tokens.shape[:2] == (3, 3)
    assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()
    with pytest.raises(ValueError, match="n_best"):
        beam_search(decoder, torch.randn(1, D), beam_size=2, n_best=3)


class CountingDecoder(ScriptedDecoder):
    """A scripted decoder that records how many rows every step computes."""

    def __init__(self, scripts: list[list[int]]) -> None:
        super().__init__(scripts)
        self.rows: list[int] = []

    def step(self, tokens, state):
        self.rows.append(tokens.size(0))
        return super().step(tokens, state)


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_finished_captions_stop_costing_compute(decode: str) -> None:
    scripts = [[5], [6, 7, 8], [], [9, 9, 9, 9, 9]]
    dec, v = CountingDecoder(scripts), torch.zeros(4, 1)
    if decode == "greedy":
        tokens = greedy(dec, v, max_len=10).tokens
        assert dec.rows == [4, 3, 2, 2, 1, 1]  # each caption leaves the batch after its <END>
    else:
        tokens = beam_search(dec, v, beam_size=3, max_len=10).tokens[:, 0]
        assert dec.rows == sorted(dec.rows, reverse=True) and dec.rows[0] == 12 and dec.rows[-1] <= 3
    for row, script in zip(tokens.tolist(), scripts):
        assert row[: len(script) + 1] == script + [END]
