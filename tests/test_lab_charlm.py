"""Character-level language model: data, bits per character, truncated BPTT, memory and decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captioning.models.decoding import greedy, sample
from captioning.lab.charlm import CharLMConfig, run, train_hello, variant_configs
from captioning.lab.config import ConfigError
from captioning.lab.lm import CharLM, TrainConfig, activation_bytes, bptt_windows, bits_per_char, generate, train_lm
from captioning.lab.text import char_vocab, decode, encode, load_corpus, source_text, split_text, unigram_bits

TINY = dict(hidden_size=32, embed_dim=16, seq_len=32, bptt=8, batch_size=16, lr=0.01, eval_every=1000)


@pytest.fixture(scope="module")
def corpus() -> dict:
    train, val = split_text(load_corpus("source"), 0.1)
    vocab = char_vocab(train)
    return {"vocab": vocab, "train": encode(vocab, train), "val": encode(vocab, val)[:3000]}


def test_source_corpus_is_this_package(tmp_path: Path) -> None:
    assert "def cell_step(" in source_text()
    (tmp_path / "b.py").write_text("b = 2")
    (tmp_path / "a.py").write_text("a = 1\n")
    assert source_text(tmp_path) == "a = 1\nb = 2\n"  # sorted, every file ends with a newline


def test_vocab_reserves_special_ids_and_round_trips() -> None:
    vocab = char_vocab("hello")
    assert vocab.itos[:4] == ["<PAD>", "<START>", "<END>", "<UNK>"] and vocab.itos[4:] == list("ehlo")
    assert decode(vocab, encode(vocab, "hello")) == "hello"
    assert decode(vocab, encode(vocab, "help")) == "hel\ufffd"


def test_missing_corpus_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_book.txt"):
        load_corpus("no_such_book.txt")


@pytest.mark.parametrize("embed_dim", [16, 0], ids=["embedding", "one-hot"])
def test_held_out_bpc_drops_below_unigram_entropy(corpus: dict, embed_dim: int) -> None:
    cfg = TrainConfig(**{**TINY, "embed_dim": embed_dim, "steps": 40})
    model, _ = train_lm(cfg, corpus["train"], len(corpus["vocab"]))
    unigram = unigram_bits(corpus["train"], corpus["val"], len(corpus["vocab"]))
    untrained = bits_per_char(CharLM.from_config(len(corpus["vocab"]), cfg), corpus["val"], cfg.seq_len)
    trained = bits_per_char(model, corpus["val"], cfg.seq_len)
    assert trained < unigram < untrained


def test_truncated_bptt_carries_state_but_cuts_gradients() -> None:
    torch.manual_seed(0)
    model = CharLM(20, "lstm", hidden_size=8, embed_dim=4)
    batch = torch.randint(4, 20, (3, 13))  # 12 steps: three windows of 4
    windows = list(bptt_windows(model, batch, window=4))
    assert len(windows) == 3 and windows[0].state_in is None
    for before, after in zip(windows, windows[1:]):
        for key in ("h", "c"):
            assert torch.equal(after.state_in[key], before.state_out[key])  # carried across the boundary
            assert not after.state_in[key].requires_grad  # but cut from the graph
    # The gradient of window 2 equals one computed from a state made without any graph.
    grad = torch.autograd.grad(windows[1].loss, model.rnn.weight_hh_l0)[0]
    with torch.no_grad():
        _, state = model(batch[:, :4])
    logits, _ = model(batch[:, 4:8], state)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 5:9].flatten())
    torch.testing.assert_close(grad, torch.autograd.grad(loss, model.rnn.weight_hh_l0)[0])
    # Full BPTT through the same steps gives a different gradient: gradients did cross there.
    logits, _ = model(batch[:, :8])
    full = torch.nn.functional.cross_entropy(logits[:, 4:].flatten(0, 1), batch[:, 5:9].flatten())
    assert not torch.allclose(grad, torch.autograd.grad(full, model.rnn.weight_hh_l0)[0])


def test_full_bptt_is_one_window() -> None:
    model = CharLM(10, "gru", hidden_size=4, embed_dim=0)
    assert len(list(bptt_windows(model, torch.randint(4, 10, (2, 9)), window=0))) == 1


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_truncated_memory_is_flat_and_full_memory_grows(cell: str) -> None:
    torch.manual_seed(0)
    model = CharLM(30, cell, hidden_size=16, embed_dim=8)
    full, truncated = [], []
    for length in (32, 64, 128):
        batch = torch.randint(4, 30, (4, length + 1))
        full.append(activation_bytes(model, batch, 0))
        truncated.append(activation_bytes(model, batch, 16))
    assert truncated[0] == truncated[1] == truncated[2]
    assert full[1] > 1.8 * full[0] and full[2] > 1.8 * full[1]
    assert truncated[0] < full[0]


@pytest.fixture(scope="module")
def hello_model() -> dict:
    return train_hello(CharLMConfig())


def test_hello_model_decodes_hello_greedily(hello_model: dict) -> None:
    assert hello_model["greedy"] == "hello"


def test_prompted_decoding_matches_the_fused_forward() -> None:
    torch.manual_seed(0)
    model = CharLM(12, "lstm", hidden_size=8, num_layers=2, embed_dim=4).eval()
    text = torch.randint(4, 12, (2, 7))
    logits, _ = model(text)  # (2, 7, V)
    state = model.init_state(text[:, :5])  # consumes 4 characters, keeps the 5th for the first step
    step_logits, state = model.step(torch.full((2,), 1), state)  # <START> stands for the 5th character
    torch.testing.assert_close(step_logits, logits[:, 4])
    step_logits, _ = model.step(text[:, 5], state)
    torch.testing.assert_close(step_logits, logits[:, 5])


def test_greedy_is_deterministic_and_cold_sampling_equals_greedy(corpus: dict) -> None:
    model, _ = train_lm(TrainConfig(**{**TINY, "steps": 10}), corpus["train"], len(corpus["vocab"]))
    model.eval()
    prompt = encode(corpus["vocab"], "def ")[None].repeat(3, 1)
    first, second = greedy(model, prompt, max_len=40), greedy(model, prompt, max_len=40)
    assert torch.equal(first.tokens, second.tokens)
    cold = sample(model, prompt, max_len=40, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(cold.tokens, first.tokens)
    text = generate(model, corpus["vocab"], "def ", length=40, temperature=0.0)
    assert text == decode(corpus["vocab"], first.tokens[0])
    hot = [generate(model, corpus["vocab"], "def ", 40, 1.5, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert hot[0] == hot[1] != hot[2]  # seeded samples repeat; different seeds differ


def test_variants_parse_and_bad_ones_are_named() -> None:
    base = CharLMConfig(variants=("", "cell=gru num_layers=2", "embed_dim=0"))
    (n0, c0), (n1, c1), (n2, c2) = variant_configs(base)
    assert n0 == "base" and c0 == base
    assert (c1.cell, c1.num_layers, c2.embed_dim) == ("gru", 2, 0)
    with pytest.raises(ConfigError, match="variant 'colour=red'.*unknown key"):
        variant_configs(CharLMConfig(variants=("colour=red",)))
    with pytest.raises(ConfigError, match="variant 'gru'"):
        variant_configs(CharLMConfig(variants=("gru",)))


def test_run_writes_results_figures_and_samples(tmp_path: Path) -> None:
    cfg = CharLMConfig(**{**TINY, "steps": 3, "eval_every": 3}, variants=("", "bptt=0"), memory_lengths=(16, 32),
                       sample_length=30, temperatures=(1.0,), hello_steps=5)
    results = run(cfg, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [m["variant"] for m in saved["models"]] == ["base", "bptt=0"]
    assert saved["memory"][0]["truncated_bytes"] == saved["memory"][1]["truncated_bytes"]
    assert saved["unigram_bpc"] == results["unigram_bpc"] > 0
    for name in ("charlm.png", "samples.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "temperature 1" in (tmp_path / "samples.html").read_text()
