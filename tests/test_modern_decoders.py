"""RWKV, Mamba and Transformer decoders: the parallel teacher-forced path equals stepping (values and
gradients), causality, decoding (beam 1 = greedy, batched beam = per-image beam), overfitting two images,
the Transformer's cache, fixed-size recurrent states, checkpoint round trips and `captioning caption`."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from captioning.cli.caption import main as caption_main
from captioning.cli.fit import cli_main
from captioning.data.vocab import Vocabulary
from captioning.inference.checkpoint import load_captioner, save_captioner
from captioning.models import DECODERS, SmallCNN
from captioning.models.captioner import build_captioner, reads_grid
from captioning.models.decoding import END, PAD, START, beam_search, greedy, sample
from captioning.models.rwkv import NEG, wkv_initial, wkv_parallel, wkv_step
from conftest import REPO, shapes_overrides

V, D, N = 15, 8, 5  # vocabulary, feature width, regions of a grid
NAMES = ["rwkv", "mamba", "transformer"]
# Every decoder reading the pooled v, then reading the region grid (grid: true).
VARIANTS = [pytest.param(name, grid, id=f"{name}-{'grid' if grid else 'pooled'}")
            for grid in (False, True) for name in NAMES]
# Small chunks so that an 11-position sequence spans several chunks of the chunked scans.
TINY = {"rwkv": dict(chunk_size=4), "mamba": dict(chunk_size=4, d_state=4), "transformer": dict(num_heads=2)}


def build(name: str, d_model: int = 16, num_layers: int = 2, grid: bool = False, **extra) -> torch.nn.Module:
    heads = {} if name == "transformer" or not grid else dict(grid_heads=2)
    return DECODERS.build(dict(name=name, vocab_size=V, feature_dim=D, d_model=d_model, num_layers=num_layers,
                               grid=grid, **TINY[name], **heads, **extra))


def features(b: int, grid: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pooled features (B, D), or a grid of N regions (B, N, D)."""
    return torch.randn(b, N, D, dtype=dtype) if grid else torch.randn(b, D, dtype=dtype)


def batch(b: int = 3, t: int = 11, dtype: torch.dtype = torch.float64,
          grid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    v = features(b, grid, dtype)  # (B, D) or (B, N, D)
    tokens = torch.randint(4, V, (b, t))  # (B, T)
    tokens[:, 0] = START
    return v, tokens


def stepped(dec, v: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) from ``init_state`` and one ``step`` per input token."""
    state, out = dec.init_state(v), []
    for t in range(tokens.size(1)):
        logits, state = dec.step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


def state_numel(state: dict) -> int:
    return sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))  # per-image regions excluded


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_parallel_teacher_forcing_equals_stepping_values_and_gradients(name: str, grid: bool) -> None:
    dec = build(name, grid=grid).double().eval()
    v, tokens = batch(grid=grid)
    parallel, step = dec(v, tokens), stepped(dec, v, tokens)
    torch.testing.assert_close(parallel, step, rtol=1e-10, atol=1e-10)  # fp64
    weights = torch.randn_like(parallel)
    grads = [torch.autograd.grad((out * weights).sum(), list(dec.parameters()), allow_unused=True)
             for out in (parallel, step)]
    for (pname, _), a, b in zip(dec.named_parameters(), *grads):
        assert a is not None and b is not None, pname
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=pname)


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_no_logit_depends_on_a_later_token(name: str, grid: bool) -> None:
    dec = build(name, grid=grid).double().eval()
    v, tokens = batch(grid=grid)
    later = tokens.clone()
    later[:, 6:] = (later[:, 6:] + 1 - 4) % (V - 4) + 4  # every token from position 6 on changes
    a, b = dec(v, tokens), dec(v, later)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(a[:, 6:], b[:, 6:])  # the change is visible from position 6 on


@pytest.mark.parametrize("name", NAMES)
def test_image_enters_through_its_own_matrix(name: str) -> None:
    dec = build(name).double().eval()
    v, tokens = batch()
    torch.testing.assert_close(dec.init_state(v)["ctx"], dec.w_ih(v))
    assert not torch.allclose(dec(v, tokens)[:, -1], dec(v + 1, tokens)[:, -1])


@pytest.mark.parametrize("name", NAMES)
def test_grid_reads_the_regions_mean_through_w_ih_and_attends_a_distribution(name: str) -> None:
    dec = build(name, grid=True).double().eval()
    grid, tokens = batch(grid=True)
    torch.testing.assert_close(dec.init_state(grid)["ctx"], dec.w_ih(grid.mean(dim=1)))
    logits, alpha = dec.attend(grid, tokens)  # (B, T, V), (B, T, N)
    assert alpha.shape == (3, 11, N) and (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=-1), torch.ones(3, 11, dtype=alpha.dtype))
    moved = grid.clone()
    moved[:, 0] += 1.0  # one region changes: the logits see it
    assert not torch.allclose(dec(moved, tokens), logits)
    with pytest.raises(ValueError, match=r"grid of region features \(B, N, 8\).*\(3, 8\)"):
        dec(grid.mean(dim=1), tokens)  # a pooled v for a decoder that reads the grid


@pytest.mark.parametrize("name", NAMES)
def test_with_all_regions_equal_where_the_decoder_looks_does_not_matter(name: str) -> None:
    dec = build(name, grid=True).double().eval()
    _, tokens = batch()
    grid = torch.randn(3, 1, D, dtype=torch.float64).expand(3, N, D)  # every region the same
    before = dec(grid, tokens)
    with torch.no_grad():
        for attention in dec.regions:
            attention.query.weight.normal_()  # other queries, other weights
    torch.testing.assert_close(dec(grid, tokens), before, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_beam_one_equals_greedy_and_batched_beam_equals_per_image(name: str, grid: bool) -> None:
    dec = build(name, grid=grid).eval()
    with torch.no_grad():
        dec.out.bias[END] += 2.0  # captions end at different lengths
    v = features(5, grid)
    g, b1 = greedy(dec, v, max_len=10), beam_search(dec, v, beam_size=1, max_len=10)
    assert torch.equal(b1.tokens[:, 0], g.tokens)
    torch.testing.assert_close(b1.scores[:, 0], g.scores)
    batched = beam_search(dec, v, beam_size=3, max_len=10, alpha=0.7, n_best=2)
    lengths = set()
    for i in range(5):
        single = beam_search(dec, v[i : i + 1], beam_size=3, max_len=10, alpha=0.7, n_best=2)
        t = single.tokens.size(-1)
        assert torch.equal(batched.tokens[i, :, :t], single.tokens[0])
        assert (batched.tokens[i, :, t:] == PAD).all()
        torch.testing.assert_close(batched.scores[i], single.scores[0])
        lengths.update(((single.tokens[0] != PAD).sum(dim=-1)).tolist())
    assert len(lengths) > 1  # beams ended at different steps: finished rows sat out some steps


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_sampling_runs_and_respects_the_vocabulary(name: str, grid: bool) -> None:
    dec = build(name, grid=grid).eval()
    out = sample(dec, features(4, grid), max_len=8, generator=torch.Generator().manual_seed(0))
    assert not ((out.tokens == START).any() or (out.tokens[:, 0] == PAD).any())
    assert torch.isfinite(out.scores).all()


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_a_tiny_model_overfits_two_images(name: str, grid: bool) -> None:
    dec = build(name, d_model=32, num_layers=1, grid=grid)
    v = features(2, grid)
    captions = [[5, 6, 7, 8, END], [9, 10, 11, END, PAD]]  # different words, different lengths
    target = torch.tensor(captions)  # (2, 5)
    inputs = torch.cat([torch.full((2, 1), START), target[:, :-1]], dim=1)  # (2, 5)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(100):  # 60 suffice for each decoder over seeds 0-3
        loss = F.cross_entropy(dec(v, inputs).flatten(0, 1), target.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = greedy(dec.eval(), v, max_len=8).tokens
    assert out[0, :5].tolist() == captions[0]
    assert out[1, :4].tolist() == captions[1][:4]


@pytest.mark.parametrize("grid", [False, True], ids=["pooled", "grid"])
def test_transformer_cached_decoding_equals_recomputation(grid: bool) -> None:
    dec = build("transformer", grid=grid).double().eval()
    v = features(3, grid, torch.float64)
    tokens, state = torch.full((3, 1), START), dec.init_state(v)
    for _ in range(9):
        cached, state = dec.step(tokens[:, -1], state)  # (B, V)
        recomputed = dec(v, tokens)[:, -1]  # (B, V): the whole prefix again, no cache
        torch.testing.assert_close(cached, recomputed, rtol=1e-10, atol=1e-10)
        tokens = torch.cat([tokens, cached.argmax(dim=-1, keepdim=True)], dim=1)
    assert state["keys"].size(3) == 1 + 9  # the image prefix and one position per step


@pytest.mark.parametrize("name", ["rwkv", "mamba"])
@pytest.mark.parametrize("grid", [False, True], ids=["pooled", "grid"])
def test_recurrent_state_size_is_fixed(name: str, grid: bool) -> None:
    dec = build(name, grid=grid).eval()
    state = dec.init_state(features(2, grid))
    tokens = torch.full((2,), START)
    sizes = []
    with torch.no_grad():
        for step in range(1, 101):
            logits, state = dec.step(tokens, state)
            tokens = logits.argmax(dim=-1)
            if step in (1, 100):
                sizes.append(state_numel(state))
    assert sizes[0] == sizes[1]
    assert all(torch.isfinite(t).all() for t in state.values() if isinstance(t, torch.Tensor))


def _naive_wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The WKV definition with log-sum-exp weights, in fp64: (B, T, C)."""
    t = k.size(1)
    out = []
    for i in range(t):
        logw = torch.cat([k[:, :i] - (i - 1 - torch.arange(i, dtype=k.dtype))[None, :, None] * w,
                          (u + k[:, i])[:, None]], dim=1)  # (B, i + 1, C)
        weights = torch.softmax(logw, dim=1)
        out.append((weights * v[:, : i + 1]).sum(dim=1))
    return torch.stack(out, dim=1)


def test_wkv_is_stable_for_huge_keys_in_both_paths() -> None:
    b, t, c = 2, 9, 5
    k = torch.randn(b, t, c) * 300  # e^300 overflows fp32 (and e^-300 underflows) without the running max
    v, w, u = torch.randn(b, t, c), torch.rand(c) + 0.1, torch.randn(c)
    reference = _naive_wkv(w.double(), u.double(), k.double(), v.double()).float()
    parallel = wkv_parallel(w, u, k, v, chunk=4)
    state, steps = wkv_initial(b, c, k), []
    for i in range(t):
        out, state = wkv_step(w, u, k[:, i], v[:, i], *state)
        steps.append(out)
    torch.testing.assert_close(parallel, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.stack(steps, dim=1), reference, rtol=1e-4, atol=1e-4)
    assert (state[2] > NEG / 2).all()  # the running max is a real exponent after the first key


@pytest.mark.parametrize(("name", "grid"), VARIANTS)
def test_checkpoint_round_trip_gives_identical_captions(name: str, grid: bool, tmp_path: Path,
                                                        tiny_shapes: Path) -> None:
    encoder = SmallCNN(channels=(8, 16), out_dim=D, grid_size=2)
    vocab = Vocabulary.build(["a red blue green circle square triangle left right of the"])
    factory = functools.partial(DECODERS.get(name), d_model=16, num_layers=2, grid=grid, **TINY[name])
    assert reads_grid(factory) == grid
    model = build_captioner(encoder, factory, len(vocab)).eval()
    assert model.decoder.feature_dim == (16 if grid else D)  # the grid's width (last block) or out_dim
    ckpt = save_captioner(tmp_path / f"{name}.ckpt", model, vocab, image_size=32)
    loaded = load_captioner(ckpt)
    assert loaded.meta["decoder"]["name"] == name and loaded.meta["decoder"]["grid"] == grid
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        for beam in (1, 3):
            a, b = model.generate(images, 8, beam), loaded.model.generate(images, 8, beam)
            assert torch.equal(a.tokens, b.tokens)
            torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)
    out = tmp_path / "captions.jsonl"
    caption_main(["--checkpoint", str(ckpt), "--images", str(tiny_shapes / "test"), "--output", str(out),
                  "--batch-size", "4", "--num-workers", "0", "--no-progress", "--beam-size", "2"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(list((tiny_shapes / "test").glob("*.png"))) and all("caption" in r for r in rows)
    if grid:  # where each word looked: one distribution over the 2×2 regions per word
        maps = tmp_path / "maps.jsonl"
        caption_main(["--checkpoint", str(ckpt), "--images", str(tiny_shapes / "test"), "--output", str(maps),
                      "--batch-size", "4", "--num-workers", "0", "--no-progress", "--attention"])
        for row in map(json.loads, maps.read_text().splitlines()):
            assert len(row["attention"]) == len(row["caption"].split())
            assert all(len(w) == 4 and abs(sum(w) - 1) < 1e-3 for w in row["attention"])


@pytest.mark.parametrize("name", NAMES)
def test_self_critical_training_step_runs_with_the_decoder_config(name: str, tiny_shapes: Path,
                                                                   tmp_path: Path) -> None:
    configs = [REPO / "configs/shapes.yaml", REPO / f"configs/decoders/{name}.yaml", REPO / "configs/scst.yaml"]
    cli = cli_main(["fit", *(a for c in configs for a in ("--config", str(c))), *shapes_overrides(tiny_shapes),
                    "--model.objective.init_args.num_samples=2", f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false",
                    "--trainer.enable_model_summary=false"])
    assert cli.model.captioner.decoder.config["name"] == name
    assert torch.isfinite(cli.trainer.logged_metrics["train/scst_loss"])


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_measures_the_decoder_on_the_tiny_workload(name: str, tmp_path: Path) -> None:
    from captioning.cli.benchmark import main as benchmark_main

    out = tmp_path / "bench.json"
    benchmark_main(["--workload", "tiny", "--decoder", name, "--device", "cpu", "--repeats", "1", "--warmup", "0",
                    "--skip", "end-to-end", "--json", str(out), "--markdown"])
    report = json.loads(out.read_text())
    assert report["decoder"] == report["sizes"]["decoder"] == name
    train = report["train"]
    assert set(train["variants"]) == {"ours"} and "skipped" in train["breakdown"]  # the levers are the LSTM's
    assert train["flops_per_step"] > 0 and train["train_tokens_per_s"]["median"] > 0
    decode = report["decode"]
    assert decode["greedy_captions_per_s"]["median"] > 0 and decode["beam2_captions_per_s"]["median"] > 0
    assert decode["speedup_over_baseline"] == {} and "baseline_skipped" in decode
    assert "skipped" in report["memory"]
