"""The attention decoders (show_attend_tell, att2in, updown): attention is a distribution over regions, the
teacher-forced pass equals stepping, beam search and checkpoints work unchanged, a tiny model overfits."""

from __future__ import annotations

import functools

import pytest
import torch

from captioning.inference.checkpoint import load_captioner, save_captioner
from captioning.models import Att2in, SmallCNN, ShowAttendTell, UpDown
from captioning.models.attention import SoftAttention
from captioning.models.captioner import Captioner, build_captioner, create_captioner, reads_grid
from captioning.models.decoding import END, START, beam_search, greedy
from captioning.data.vocab import Vocabulary

V, D, N = 12, 6, 5
DECODERS = {"show_attend_tell": functools.partial(ShowAttendTell, penalty=1.0), "att2in": Att2in, "updown": UpDown}


def make(name: str, dtype: torch.dtype = torch.float32, region_dim: int | None = None):
    torch.manual_seed(0)
    return DECODERS[name](V, D, embed_dim=7, hidden_dim=9, attention_dim=8, region_dim=region_dim).to(dtype).eval()


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_attention_is_a_distribution_and_equal_regions_give_their_mean(name: str) -> None:
    decoder = make(name)
    grid = torch.randn(3, N, D)
    _, state = decoder.step(torch.full((3,), START), decoder.init_state(grid))
    alpha = state["alpha"]  # (B, N)
    assert alpha.shape == (3, N) and (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=-1), torch.ones(3))
    same = torch.randn(3, 1, D).expand(3, N, D).contiguous()  # every region equal
    _, state = decoder.step(torch.full((3,), START), decoder.init_state(same))
    torch.testing.assert_close(state["alpha"], torch.full((3, N), 1 / N))
    context, _ = decoder.attention({"grid": same, "keys": decoder.attention.keys(same)}, torch.randn(3, 9))
    torch.testing.assert_close(context, same.mean(dim=1))


def test_soft_attention_follows_the_query() -> None:
    att = SoftAttention(D, 4, 8)
    grid, query = torch.randn(2, N, D), torch.randn(2, 4)
    context, weights = att({"grid": grid, "keys": att.keys(grid)}, query)
    torch.testing.assert_close(context, torch.einsum("bn,bnd->bd", weights, grid))
    _, other = att({"grid": grid, "keys": att.keys(grid)}, -query)
    assert not torch.allclose(weights, other)  # the query changes where it looks


def test_rows_indexing_their_images_equal_copied_regions_values_and_gradients() -> None:
    """Decoding keeps one copy of each image's regions and gives every row (a beam) its image's index; that
    must be exactly attention over a per-row copy of the regions, for values and for gradients (SCST)."""
    att = SoftAttention(D, 4, 8).double()
    grid = torch.randn(3, N, D, dtype=torch.float64, requires_grad=True)
    image = torch.tensor([2, 0, 0, 1, 2, 2])  # beams of images 2, 0, 0, … in any order
    query = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    indexed = att({"grid": grid, "keys": att.keys(grid)}, query, image)
    copied = att({"grid": grid[image], "keys": att.keys(grid)[image]}, query)
    for got, want in zip(indexed, copied):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    weights = torch.randn(6, D, dtype=torch.float64)
    grads = [torch.autograd.grad((out[0] * weights).sum(), [grid, query, *att.parameters()])
             for out in (indexed, copied)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("region_dim", [None, 4])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_teacher_forcing_equals_stepping_values_and_gradients(name: str, region_dim: int | None) -> None:
    decoder = make(name, torch.float64, region_dim)
    grid = torch.randn(3, N, D, dtype=torch.float64)
    tokens = torch.tensor([[START, 4, 5, 6, 7], [START, 8, 9, 0, 0], [START, 10, 0, 0, 0]])
    fast = decoder(grid, tokens)  # (B, T, V)
    state, stepped = decoder.init_state(grid), []
    for t in range(tokens.size(1)):
        logits, state = decoder.step(tokens[:, t], state)
        stepped.append(logits)
    slow = torch.stack(stepped, dim=1)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(fast)
    grads = [torch.autograd.grad((out * weights).sum(), list(decoder.parameters())) for out in (fast, slow)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("region_dim", [None, 4])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_beam_one_is_greedy_and_batched_beam_is_per_image_beam(name: str, region_dim: int | None) -> None:
    decoder = make(name, region_dim=region_dim)
    grid = torch.randn(4, N, D)
    g, b1 = greedy(decoder, grid, max_len=7), beam_search(decoder, grid, beam_size=1, max_len=7)
    assert torch.equal(b1.tokens[:, 0], g.tokens)
    batched = beam_search(decoder, grid, beam_size=3, max_len=7)
    for i in range(4):
        alone = beam_search(decoder, grid[i:i + 1], beam_size=3, max_len=7)
        assert torch.equal(alone.tokens[0, 0], batched.tokens[i, 0])
        torch.testing.assert_close(alone.scores[0, 0], batched.scores[i, 0])


def test_doubly_stochastic_penalty_counts_words_only() -> None:
    decoder = make("show_attend_tell", torch.float64)
    grid = torch.randn(2, N, D, dtype=torch.float64)
    tokens = torch.tensor([[START, 4, 5], [START, 0, 0]])  # the second caption is one word long
    _, alphas = decoder.attend(grid, tokens)
    decoder(grid, tokens)
    first = ((1 - alphas[0].sum(0)) ** 2).sum()
    second = ((1 - alphas[1, 0]) ** 2).sum()  # padding positions are not attention the caption spent
    torch.testing.assert_close(decoder.penalty, (first + second) / 2)
    assert make("att2in")(torch.randn(2, N, D), tokens) is not None and make("att2in").penalty is None


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_grid_of_the_wrong_shape_is_a_clear_error(name: str) -> None:
    decoder = make(name)
    with pytest.raises(ValueError, match=rf"{name} decoder reads a grid .*\(B, N, {D}\).*\(3, {D}\)"):
        decoder.init_state(torch.randn(3, D))  # a pooled v instead of a grid
    with pytest.raises(ValueError, match=rf"\(B, N, {D}\).*\(3, {N}, 4\)"):
        decoder(torch.randn(3, N, 4), torch.full((3, 2), START))


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_tiny_attention_model_overfits_two_images(name: str) -> None:
    torch.manual_seed(0)
    decoder = DECODERS[name](V, D, embed_dim=16, hidden_dim=32, attention_dim=16)
    grid = torch.randn(2, N, D)
    captions = torch.tensor([[START, 4, 5, 6, END], [START, 7, 8, END, 0]])
    opt = torch.optim.Adam(decoder.parameters(), lr=0.02)
    for _ in range(150):
        logits = decoder(grid, captions[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), captions[:, 1:].flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = greedy(decoder.eval(), grid, max_len=5).tokens
    assert out[0, :4].tolist() == [4, 5, 6, END] and out[1, :3].tolist() == [7, 8, END]


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_captioner_encodes_grids_and_checkpoints_rebuild_the_decoder(name: str, tmp_path) -> None:
    encoder = SmallCNN(channels=[8, 16], out_dim=10, grid_size=2)
    factory = functools.partial(DECODERS[name], embed_dim=7, hidden_dim=9, attention_dim=8)
    assert reads_grid(factory) and not reads_grid(lambda v, d: None)
    model = build_captioner(encoder, factory, V).eval()
    assert model.decoder.feature_dim == 16  # the grid's width (the last block's channels), not out_dim 10
    images = torch.rand(2, 3, 16, 16)
    assert model.encode(images).shape == (2, 4, 16)  # (B, N, D): a 2×2 grid
    vocab = Vocabulary([f"w{i}" for i in range(V - 4)])
    path = save_captioner(tmp_path / "att.ckpt", model, vocab, image_size=16)
    loaded = load_captioner(path)
    assert loaded.meta["decoder"]["name"] == name and type(loaded.model.decoder) is type(model.decoder)
    torch.testing.assert_close(loaded.model.generate(images, 6, 2).scores, model.generate(images, 6, 2).scores)
    rebuilt = create_captioner(loaded.meta)
    assert isinstance(rebuilt, Captioner) and rebuilt.decoder.config == model.decoder.config


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_attention_maps_are_the_weights_decoding_used(name: str) -> None:
    from captioning.inference.engine import attention_maps

    torch.manual_seed(1)
    model = Captioner(SmallCNN(channels=[8, 16], out_dim=10, grid_size=2), make(name)).eval()
    grid = torch.randn(3, N, D)
    out = greedy(model.decoder, grid, max_len=6)
    state, tokens, seen = model.decoder.init_state(grid), torch.full((3,), START), []
    for t in range(out.tokens.size(1)):  # replay decoding, recording each step's weights
        _, state = model.decoder.step(tokens, state)
        seen.append(state["alpha"])
        tokens = out.tokens[:, t]
    maps = attention_maps(model, grid, out)
    for b in range(3):
        words = int(((out.tokens[b] != END) & (out.tokens[b] != 0)).cumprod(0).sum())
        assert len(maps[b]) == words
        for t in range(words):
            torch.testing.assert_close(torch.tensor(maps[b][t]), seen[t][b])


def test_benchmark_measures_the_attention_decoder_over_a_grid(tmp_path) -> None:
    import json

    from captioning.cli.benchmark import main as benchmark_main

    out = tmp_path / "bench.json"
    benchmark_main(["--workload", "tiny", "--decoder", "updown", "--device", "cpu", "--repeats", "1", "--warmup", "0",
                    "--skip", "end-to-end", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["decoder"] == "updown" and report["sizes"]["regions"] == 4
    assert report["train"]["flops_per_step"] > 0 and report["train"]["train_tokens_per_s"]["median"] > 0
    assert report["decode"]["greedy_captions_per_s"]["median"] > 0 and "skipped" in report["memory"]
