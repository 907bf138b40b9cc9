"""The character-level language model experiment.

Trains the lecture's "hello" model, then a base model on real text and one variant per changed setting
(one-hot input, cell, depth, full BPTT, no clipping), reports held-out bits per character against the
unigram baseline, measures the activation memory of full vs truncated BPTT as sequences grow, and
decodes greedily and with temperature sampling through :mod:`captioning.models.decoding`.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F

from captioning.models.decoding import END, START
from captioning.core.io import write_json_atomic
from captioning.lab.config import ConfigError, apply, as_dict, parse_overrides
from captioning.lab.lm import CharLM, TrainConfig, activation_bytes, bptt_windows, generate, train_lm
from captioning.lab.render import coloured_html, coloured_png, figure, save_figure, write_html
from captioning.lab.text import HELLO, char_vocab, encode, load_corpus, split_text, unigram_bits
from captioning.data.vocab import Vocabulary

DEFAULT_VARIANTS = ("", "embed_dim=0", "cell=rnn_tanh", "cell=gru", "num_layers=2", "bptt=0", "clip=0")
QUICK = MappingProxyType({"steps": 120, "eval_every": 40, "variants": ("", "embed_dim=0", "bptt=0"),
                          "memory_lengths": (32, 64, 128, 256), "sample_length": 120})  # the --quick preset


@dataclass(frozen=True)
class CharLMConfig(TrainConfig):
    """Settings of the char-LM experiment: the base model's :class:`TrainConfig` fields, and these.

    Args:
        corpus: ``source`` (this package's Python files), ``hello``, or the path of a UTF-8 text file.
        val_fraction: Tail of the corpus held out for bits per character.
        variants: Models to train, each the base with space-separated ``key=value`` changes ("" is the base).
        memory_lengths: Sequence lengths at which full and truncated BPTT memory is measured.
        prompt: Text the samples continue.
        sample_length: Characters per sample.
        temperatures: Sampling temperatures (greedy decoding is always shown).
        hello_hidden: Hidden units of the "hello" model (a vanilla tanh RNN on one-hot characters).
        hello_steps: Training steps of the "hello" model.
    """

    corpus: str = "source"
    val_fraction: float = 0.1
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    memory_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    prompt: str = "def "
    sample_length: int = 300
    temperatures: tuple[float, ...] = (0.5, 1.0, 1.5)
    hello_hidden: int = 8
    hello_steps: int = 150


def variant_configs(cfg: CharLMConfig) -> list[tuple[str, CharLMConfig]]:
    """Every variant as (name, config); a bad key or value raises an error naming the variant."""
    out = []
    for spec in cfg.variants:
        pairs = spec.split()
        bad = [p for p in pairs if "=" not in p]
        if bad:
            raise ConfigError(f"variant {spec!r}: expected key=value, got {bad[0]!r}")
        args = [a for p in pairs for a in ("--" + p.split("=", 1)[0].strip(), p.split("=", 1)[1].strip())]
        changed = apply(cfg, parse_overrides(args), f"variant {spec!r}")
        out.append((spec or "base", changed))
    return out


def describe(cfg: TrainConfig) -> str:
    """A short label of a model's settings."""
    inputs = "one-hot" if cfg.embed_dim == 0 else f"embed {cfg.embed_dim}"
    bptt = "full BPTT" if cfg.bptt in (0, cfg.seq_len) else f"TBPTT {cfg.bptt}"
    clip = f"clip {cfg.clip:g}" if cfg.clip > 0 else "no clip"
    return f"{cfg.cell}, {inputs}, {cfg.num_layers} layer(s), {bptt}, {clip}"


def train_hello(cfg: CharLMConfig) -> dict:
    """Trains a vanilla tanh RNN on one-hot ``<START> h e l l o <END>`` and decodes it greedily."""
    vocab = char_vocab(HELLO)
    seq = torch.cat([torch.tensor([START]), encode(vocab, HELLO), torch.tensor([END])])[None]  # (1, 7)
    torch.manual_seed(cfg.seed)
    model = CharLM(len(vocab), "rnn_tanh", cfg.hello_hidden, embed_dim=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(cfg.hello_steps):
        (window,) = bptt_windows(model, seq, window=0)
        opt.zero_grad()
        window.loss.backward()
        opt.step()
    with torch.no_grad():
        probs = model(seq[:, :-1])[0].softmax(-1)[0]  # (6, V)
    return {"greedy": generate(model, vocab, length=10), "loss": window.loss.item(),
            "probs": probs[:, [vocab.end_id, *range(4, len(vocab))]].tolist(),
            "labels": ["<END>", *vocab.itos[4:]], "inputs": ["<START>", *HELLO]}


def char_probs(model: CharLM, vocab: Vocabulary, prompt: str, text: str) -> list[float]:
    """The model's probability of every character of ``text`` following ``prompt``."""
    ids = torch.cat([encode(vocab, prompt) if prompt else torch.tensor([START]), encode(vocab, text)])
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])  # (1, N - 1, V)
        p = F.softmax(logits[0], dim=-1).gather(1, ids[1:, None])[:, 0]  # (N - 1,)
    return p[-len(text):].tolist() if text else []


def memory_curve(cfg: CharLMConfig, vocab_size: int) -> list[dict]:
    """Peak activation bytes of one training sequence of every length, full vs truncated BPTT."""
    torch.manual_seed(cfg.seed)
    model = CharLM.from_config(vocab_size, cfg)
    window = cfg.bptt if 0 < cfg.bptt < cfg.seq_len else 32
    rows = []
    for length in cfg.memory_lengths:
        batch = torch.randint(4, vocab_size, (cfg.batch_size, length + 1))
        rows.append({"length": length, "full_bytes": activation_bytes(model, batch, 0),
                     "truncated_bytes": activation_bytes(model, batch, window), "window": window})
    return rows


def _samples(cfg: CharLMConfig, model: CharLM, vocab: Vocabulary) -> list[dict]:
    """Greedy and temperature samples from the base model, each with its per-character probabilities."""
    gen = torch.Generator().manual_seed(cfg.seed)
    out = []
    for temp in (0.0, *cfg.temperatures):
        text = generate(model, vocab, cfg.prompt, cfg.sample_length, temp, gen)
        out.append({"temperature": temp, "text": text, "probs": char_probs(model, vocab, cfg.prompt, text)})
    return out


def _plot(results: dict, path: Path) -> None:
    """Bits per character per variant, held-out learning curves, BPTT memory and the "hello" probabilities."""
    fig, ax = figure(2, 2, figsize=(12, 8))
    models = results["models"]
    names = [m["variant"] for m in models]
    ax[0, 0].barh(names, [m["val_bpc"] for m in models], color="tab:blue")
    ax[0, 0].axvline(results["unigram_bpc"], color="tab:red", ls="--", label="unigram baseline")
    ax[0, 0].invert_yaxis()
    ax[0, 0].set(xlabel="held-out bits per character", title="char LM variants")
    ax[0, 0].legend(fontsize=8)
    for m in models:
        ax[0, 1].plot([r["step"] for r in m["history"]], [r["val_bpc"] for r in m["history"]], label=m["variant"])
    ax[0, 1].axhline(results["unigram_bpc"], color="tab:red", ls="--")
    ax[0, 1].set(xlabel="training sequences", ylabel="held-out bits/char", title="learning curves")
    ax[0, 1].legend(fontsize=7)
    mem = results["memory"]
    lengths = [r["length"] for r in mem]
    ax[1, 0].plot(lengths, [r["full_bytes"] / 2 ** 20 for r in mem], "o-", label="full BPTT")
    ax[1, 0].plot(lengths, [r["truncated_bytes"] / 2 ** 20 for r in mem], "s-",
                  label=f"truncated BPTT (window {mem[0]['window']})")
    ax[1, 0].set(xlabel="sequence length (characters)", ylabel="activation memory (MiB)", ylim=(0, None),
                 title="memory autograd holds for backward")
    ax[1, 0].legend(fontsize=8)
    hello = results["hello"]
    ax[1, 1].imshow(torch.tensor(hello["probs"]).T, cmap="Blues", vmin=0, vmax=1)
    ax[1, 1].set_xticks(range(len(hello["inputs"])), hello["inputs"])
    ax[1, 1].set_yticks(range(len(hello["labels"])), hello["labels"])
    ax[1, 1].set(xlabel="input character", ylabel="next character",
                 title=f"'hello' RNN: p(next); greedy -> {hello['greedy']!r}")
    fig.tight_layout()
    save_figure(fig, path)


def _write_samples(cfg: CharLMConfig, samples: list[dict], out: Path) -> None:
    """Samples as HTML (coloured by the model's probability of each character) and as a PNG."""
    sections, texts, values = [], [], []
    for s in samples:
        label = "greedy" if s["temperature"] == 0 else f"temperature {s['temperature']:g}"
        sections.append((label, f"<p>prompt: <code>{html.escape(cfg.prompt)}</code></p>"
                         + coloured_html(s["text"], s["probs"], vmax=1.0)))
        header = f"### {label}\n"
        texts.append(header + s["text"] + "\n\n")
        values += [0.0] * len(header) + s["probs"] + [0.0, 0.0]
    write_html(out / "samples.html", "char LM samples (red: probable, white: improbable)", sections)
    coloured_png(out / "samples.png", "".join(texts), values, vmax=1.0, max_cols=90,
                 title=f"samples after {cfg.prompt!r}; background = model probability of the character")


def _tables(cfg: CharLMConfig, results: dict) -> dict[str, list[dict]]:
    """The printed summary: bits per character per variant, activation memory, decoding."""
    models = [{"variant": m["variant"], "settings": m["settings"], "held_out_bpc": m["val_bpc"],
               "max_grad_norm": max(r["max_grad_norm"] for r in m["history"]),
               "clipped_updates": sum(r["over_clip"] for r in m["history"]) / len(m["history"]),
               "seconds": m["train_seconds"]} for m in results["models"]]
    models.append({"variant": "unigram", "settings": "character frequencies only",
                   "held_out_bpc": results["unigram_bpc"], "max_grad_norm": "", "clipped_updates": "", "seconds": ""})
    memory = [{"length": r["length"], "full_MiB": r["full_bytes"] / 2 ** 20,
               "truncated_MiB": r["truncated_bytes"] / 2 ** 20} for r in results["memory"]]
    decoding = [{"decoding": "greedy" if s["temperature"] == 0 else f"T={s['temperature']:g}",
                 "mean_bits": s["mean_bits"], "start": s["text"][:50].replace("\n", "\\n")} for s in results["samples"]]
    return {"held-out bits per character": models, "activation memory": memory,
            f"decoding after {cfg.prompt!r}": decoding}


def run(cfg: CharLMConfig, out: Path) -> dict:
    """Runs the whole experiment and writes ``results.json``, ``charlm.png``, ``samples.html``/``.png``."""
    out = Path(out)
    variants = variant_configs(cfg)  # fail on a bad variant before any training
    train_text, val_text = split_text(load_corpus(cfg.corpus), cfg.val_fraction)
    vocab = char_vocab(train_text)
    train_ids, val_ids = encode(vocab, train_text), encode(vocab, val_text)
    results = {"config": as_dict(cfg), "corpus_chars": {"train": len(train_ids), "held_out": len(val_ids)},
               "vocab_size": len(vocab), "unigram_bpc": unigram_bits(train_ids, val_ids, len(vocab)),
               "hello": train_hello(cfg), "models": []}
    samplers = []  # the base model samples; if no variant is the base, the first one does
    for name, vcfg in variants:
        start = time.perf_counter()
        model, history = train_lm(vcfg, train_ids, len(vocab), val_ids)
        results["models"].append({"variant": name, "settings": describe(vcfg), "val_bpc": history[-1]["val_bpc"],
                                  "parameters": sum(p.numel() for p in model.parameters()),
                                  "train_seconds": round(time.perf_counter() - start, 1), "history": history})
        samplers.insert(0 if vcfg == cfg else len(samplers), model)
    results["memory"] = memory_curve(cfg, len(vocab))
    samples = _samples(cfg, samplers[0], vocab)
    results["samples"] = [{"temperature": s["temperature"], "text": s["text"],
                           "mean_bits": -sum(math.log2(max(p, 1e-12)) for p in s["probs"]) / max(1, len(s["probs"]))}
                          for s in samples]
    _plot(results, out / "charlm.png")
    _write_samples(cfg, samples, out)
    results["tables"] = _tables(cfg, results)
    write_json_atomic(out / "results.json", results)
    return results
