"""Modern recurrences: LSTM, RWKV, Mamba and a Transformer as character language models, compared.

All four are the registered caption decoders (:mod:`captioning.lab.seqmodels`), sized to about the same
parameter count and trained for the same wall-clock budget on the char-LM corpus. The experiment reports

1. held-out bits per character after the budget (and the steps each model managed);
2. time and memory of a teacher-forced training pass against the sequence length, with fitted exponents;
3. the decoding state's size and the time per token against the number of tokens already generated;
4. ``||dL/dx_t||`` back through time for a loss at the last position, at initialization and after training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from captioning.core.io import write_json_atomic
from captioning.lab.config import as_dict, require_positive
from captioning.lab.costs import fit_exponent, generation_cost, input_gradient_norms, training_cost
from captioning.lab.lm import bits_per_char, random_batch
from captioning.lab.modern_plot import plot, tables
from captioning.lab.seqmodels import MODELS, ModelShape, build_lm, count_parameters, train_for, width_for
from captioning.lab.text import char_vocab, encode, load_corpus, split_text, unigram_bits

QUICK = MappingProxyType({"params": 20_000, "budget_seconds": 2.0, "min_steps": 20, "batch_size": 16, "seq_len": 64,
                          "log_every": 5, "eval_chars": 4000, "lengths": (64, 128, 256, 512), "repeats": 1,
                          "generated": (1, 16, 100), "probe": 4, "flow_len": 64, "flow_batch": 4})  # --quick


@dataclass(frozen=True)
class ModernConfig(ModelShape):
    """Settings of the modern-recurrences experiment: the :class:`ModelShape` fields, and these.

    Args:
        corpus: ``source`` (this package's Python files), ``hello``, or the path of a UTF-8 text file.
        val_fraction: Tail of the corpus held out for bits per character.
        models: Which of :data:`~captioning.lab.seqmodels.MODELS` to compare.
        params: Target parameter count; each model's width is chosen to come closest to it.
        budget_seconds: Wall-clock training time of every model.
        min_steps: Steps every model takes even past the budget (0 for the full run; ``--quick`` takes 20, so
            its smoke check does not depend on how busy the machine is).
        batch_size: Training sequences per step.
        seq_len: Characters per training sequence (and per held-out window).
        lr: Adam learning rate.
        clip: Maximum total gradient norm; 0 disables clipping.
        log_every: Steps between rows of the training history.
        eval_chars: Held-out characters scored (0: all of them).
        lengths: Sequence lengths of the training-cost measurement.
        cost_batch: Sequences per training pass of that measurement.
        repeats: Timed passes per length (the fastest counts).
        generated: Numbers of generated tokens at which decoding is measured.
        probe: Decoding steps timed after each of those points (the median counts).
        flow_len: Positions of the gradient-flow measurement.
        flow_batch: Held-out windows it averages over.
        seed: Random seed of initialization, batches and measurements.
    """

    corpus: str = "source"
    val_fraction: float = 0.1
    models: tuple[str, ...] = MODELS
    params: int = 200_000
    budget_seconds: float = 150.0
    min_steps: int = 0
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    clip: float = 1.0
    log_every: int = 10
    eval_chars: int = 0
    lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
    cost_batch: int = 1
    repeats: int = 2
    generated: tuple[int, ...] = (1, 64, 256, 1024, 4096)
    probe: int = 8
    flow_len: int = 256
    flow_batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(f"models must be some of {', '.join(MODELS)}, got {list(self.models)}")
        require_positive(self, "params", "budget_seconds", "batch_size", "seq_len", "lr", "log_every",
                         "cost_batch", "repeats", "probe", "flow_batch", "lstm_layers", "lstm_embed",
                         "block_layers", "num_heads")
        if len(set(self.lengths)) < 2 or min(self.lengths) < 2:
            raise ValueError(f"lengths needs at least two different lengths >= 2, got {list(self.lengths)}")
        if not self.generated or min(self.generated) < 1:
            raise ValueError(f"generated must be token counts >= 1, got {list(self.generated)}")
        if self.flow_len < 2 or self.clip < 0 or self.eval_chars < 0:
            raise ValueError("flow_len must be >= 2, clip and eval_chars >= 0")


def exponents(rows: list[dict]) -> dict[str, float | None]:
    """Fitted growth exponents of a training-cost curve (rows by length).

    ``time`` and ``saved_bytes`` fit every length; ``time_long`` only the longer half (where attention's
    quadratic term, if any, dominates); ``peak_rss`` the lengths whose peak grew at all (``None`` if < 2).
    """
    rows = sorted(rows, key=lambda r: r["length"])
    long = rows[-max(2, math.ceil(len(rows) / 2)):]  # the longer half, at least two lengths
    lengths = [r["length"] for r in rows]
    rss = [(r["length"], r["peak_rss_bytes"]) for r in rows if r["peak_rss_bytes"]]
    return {"time": fit_exponent(lengths, [r["seconds"] for r in rows]),
            "time_long": fit_exponent([r["length"] for r in long], [r["seconds"] for r in long]),
            "saved_bytes": fit_exponent(lengths, [r["saved_bytes"] for r in rows]),
            "peak_rss": fit_exponent(*zip(*rss)) if len({x for x, _ in rss}) >= 2 else None}


def study(cfg: ModernConfig, name: str, vocab_size: int, data: dict) -> dict:
    """Sizes, trains and measures one model.

    Args:
        cfg: The experiment settings.
        name: One of :data:`~captioning.lab.seqmodels.MODELS`.
        vocab_size: Characters including the special tokens.
        data: ``train`` and ``val`` character ids, and ``flow`` windows (B, flow_len + 1).
    """
    width = width_for(name, vocab_size, cfg.params, cfg)
    torch.manual_seed(cfg.seed)
    model = build_lm(name, vocab_size, width, cfg)
    flow_init = input_gradient_norms(model, data["flow"])
    gen = torch.Generator().manual_seed(cfg.seed)
    history = train_for(model, data["train"], cfg.budget_seconds, cfg.batch_size, cfg.seq_len, cfg.lr, cfg.clip,
                        cfg.log_every, gen, cfg.min_steps)
    start = time.perf_counter()
    val_bpc = bits_per_char(model, data["val"], cfg.seq_len)
    eval_seconds = time.perf_counter() - start
    cost = [training_cost(model, n, cfg.cost_batch, cfg.repeats, gen) for n in sorted(set(cfg.lengths))]
    return {"model": name, "decoder": model.decoder.config, "width": width,
            "parameters": count_parameters(model), "steps": history[-1]["step"],
            "tokens_seen": history[-1]["tokens"], "train_seconds": history[-1]["seconds"],
            "val_bpc": val_bpc, "eval_seconds": round(eval_seconds, 2), "history": history,
            "training_cost": cost, "exponents": exponents(cost),
            "generation": generation_cost(model, sorted(set(cfg.generated)), cfg.probe),
            "gradient_flow": {"init": flow_init, "trained": input_gradient_norms(model, data["flow"])}}


def load_data(cfg: ModernConfig) -> tuple[int, dict, float]:
    """The vocabulary size, the ``train``/``val``/``flow`` ids and the unigram bits per character."""
    train_text, val_text = split_text(load_corpus(cfg.corpus), cfg.val_fraction)
    vocab = char_vocab(train_text)
    train_ids, val_ids = encode(vocab, train_text), encode(vocab, val_text)
    if cfg.eval_chars:
        val_ids = val_ids[:cfg.eval_chars]
    flow = random_batch(val_ids, cfg.flow_batch, cfg.flow_len + 1, torch.Generator().manual_seed(cfg.seed))
    return len(vocab), {"train": train_ids, "val": val_ids, "flow": flow}, unigram_bits(train_ids, val_ids,
                                                                                         len(vocab))


def run(cfg: ModernConfig, out: Path) -> dict:
    """Runs the comparison and writes ``results.json`` and ``modern.png``."""
    out = Path(out)
    vocab_size, data, unigram = load_data(cfg)
    results = {"config": as_dict(cfg), "vocab_size": vocab_size, "log2_vocab": math.log2(vocab_size),
               "corpus_chars": {"train": len(data["train"]), "held_out": len(data["val"])},
               "unigram_bpc": unigram, "threads": torch.get_num_threads(),
               "models": [study(cfg, name, vocab_size, data) for name in cfg.models]}
    plot(results, out / "modern.png")
    results["tables"] = tables(results)
    write_json_atomic(out / "results.json", results)
    return results
