"""The figure and the printed tables of the modern-recurrences experiment (:mod:`captioning.lab.modern`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.ticker import NullLocator

from captioning.lab.render import figure, save_figure

COLOURS = {"lstm": "tab:blue", "rwkv": "tab:green", "mamba": "tab:orange", "transformer": "tab:red"}
KIB = 2 ** 10


def _bits_panels(results: dict, ax: Any) -> None:
    """Held-out bits per character (bars) and training bits per character against wall-clock time."""
    models = results["models"]
    names = [f"{m['model']} ({m['parameters'] / 1e3:.0f}k, {m['steps']} steps)" for m in models]
    ax[0].barh(names, [m["val_bpc"] for m in models], color=[COLOURS[m["model"]] for m in models])
    ax[0].axvline(results["unigram_bpc"], color="k", ls="--", label="unigram baseline")
    ax[0].invert_yaxis()
    ax[0].set(xlabel="held-out bits per character", title="after the same wall-clock budget")
    ax[0].legend(fontsize=8)
    for m in models:
        ax[1].plot([r["seconds"] for r in m["history"]], [r["train_bpc"] for r in m["history"]], ".-",
                   color=COLOURS[m["model"]], label=m["model"])
    ax[1].axhline(results["unigram_bpc"], color="k", ls="--")
    ax[1].set(xlabel="training seconds", ylabel="training bits/char", title="learning curves")
    ax[1].legend(fontsize=8)


def _cost_panels(results: dict, ax: Any) -> None:
    """Time and memory per token of a training pass against the sequence length (log-log)."""
    for m in results["models"]:
        rows, colour, exp = m["training_cost"], COLOURS[m["model"]], m["exponents"]
        lengths = [r["length"] for r in rows]
        ax[0].loglog(lengths, [1e6 * r["seconds_per_token"] for r in rows], "o-", color=colour,
                     label=f"{m['model']}: T^{exp['time']:.2f} (long: T^{exp['time_long']:.2f})")
        ax[1].loglog(lengths, [r["saved_bytes_per_token"] / KIB for r in rows], "o-", color=colour,
                     label=f"{m['model']}: saved, T^{exp['saved_bytes']:.2f}")
        rss = [(r["length"], r["peak_rss_bytes_per_token"] / KIB) for r in rows if r["peak_rss_bytes"]]
        if rss:
            ax[1].loglog(*zip(*rss), "x:", color=colour)
    ax[0].set(xlabel="sequence length T", ylabel="µs per token (forward + backward)",
              title="training pass: total time ~ T^exponent")
    ax[1].set(xlabel="sequence length T", ylabel="KiB per token",
              title="memory: saved for backward (o), peak RSS growth (x)")
    for a in ax:
        a.legend(fontsize=7)
        a.set_xticks(lengths, [str(t) for t in lengths])  # the measured lengths, no overlapping minor labels
        a.xaxis.set_minor_locator(NullLocator())


def _decoding_panels(results: dict, ax: Any) -> None:
    """Decoding state size and time per token against the number of tokens generated (log-log)."""
    for m in results["models"]:
        rows, colour = m["generation"], COLOURS[m["model"]]
        n = [r["generated"] for r in rows]
        ax[0].loglog(n, [r["state_bytes"] / KIB for r in rows], "o-", color=colour, label=m["model"])
        ax[1].loglog(n, [1e6 * r["seconds_per_token"] for r in rows], "o-", color=colour, label=m["model"])
    ax[0].set(xlabel="tokens generated", ylabel="decoding state (KiB)", title="generation memory")
    ax[1].set(xlabel="tokens generated", ylabel="µs per next token", title="generation time")
    for a in ax:
        a.legend(fontsize=8)


def _flow_panels(results: dict, ax: Any) -> None:
    """``||dL/dx_t||`` against the steps back from the loss, after training and at initialization."""
    for a, when in zip(ax, ("trained", "init")):
        for m in results["models"]:
            a.semilogy(m["gradient_flow"][when], color=COLOURS[m["model"]], label=m["model"], lw=1)
        a.set(xlabel="steps back from the loss (T - t)", ylabel="||dL/dx_t||",
              title=f"gradient flow, {'after training' if when == 'trained' else 'at initialization'}")
        a.legend(fontsize=8)


def plot(results: dict, path: Path) -> None:
    """All four studies in one 2 x 4 figure."""
    fig, ax = figure(2, 4, figsize=(22, 9))
    _bits_panels(results, ax[0, :2])
    _cost_panels(results, ax[0, 2:])
    _decoding_panels(results, ax[1, :2])
    _flow_panels(results, ax[1, 2:])
    fig.tight_layout()
    save_figure(fig, path)


def _by_length(results: dict, key: str, scale: float, exponent: str) -> list[dict]:
    """One row per model: ``key`` times ``scale`` at every length, and the fitted exponent(s)."""
    rows = []
    for m in results["models"]:
        row = {"model": m["model"]}
        for r in m["training_cost"]:
            value = r[key]
            row[f"T={r['length']}"] = "" if value is None else scale * value
        row["exponent"] = m["exponents"][exponent] if m["exponents"][exponent] is not None else ""
        if exponent == "time":
            row["exponent_long"] = m["exponents"]["time_long"]
        rows.append(row)
    return rows


def _by_generated(results: dict, key: str, scale: float) -> list[dict]:
    """One row per model: ``key`` times ``scale`` after every number of generated tokens."""
    return [{"model": m["model"], **{f"n={r['generated']}": scale * r[key] for r in m["generation"]}}
            for m in results["models"]]


def tables(results: dict) -> dict[str, list[dict]]:
    """The printed summary of every study."""
    bits = [{"model": m["model"], "width": m["width"], "parameters": m["parameters"], "steps": m["steps"],
             "tokens_seen": m["tokens_seen"], "train_s": m["train_seconds"], "held_out_bpc": m["val_bpc"]}
            for m in results["models"]]
    bits.append({"model": "unigram", "width": "", "parameters": "", "steps": "", "tokens_seen": "",
                 "train_s": "", "held_out_bpc": results["unigram_bpc"]})
    flow = []
    for m in results["models"]:
        norms = m["gradient_flow"]["trained"]
        flow.append({"model": m["model"], **{f"k={k}": norms[k] for k in sorted({0, 1, 16, 64, len(norms) - 1})
                                              if k < len(norms)},
                     f"init_k={len(norms) - 1}": m["gradient_flow"]["init"][-1]})
    return {"held-out bits per character after the same wall-clock budget": bits,
            "training pass (forward + backward): microseconds per token": _by_length(
                results, "seconds_per_token", 1e6, "time"),
            "memory saved for backward: KiB per token": _by_length(results, "saved_bytes_per_token", 1 / KIB,
                                                                  "saved_bytes"),
            "peak RSS growth of a training pass: KiB per token": _by_length(results, "peak_rss_bytes_per_token",
                                                                           1 / KIB, "peak_rss"),
            "decoding state: KiB after n tokens": _by_generated(results, "state_bytes", 1 / KIB),
            "decoding time: microseconds per token after n tokens": _by_generated(results, "seconds_per_token",
                                                                                  1e6),
            "||dL/dx_t|| k steps back from a loss at the last position (trained)": flow}
