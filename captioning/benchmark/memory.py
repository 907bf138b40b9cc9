"""Peak memory of training on a long sequence with full vs truncated backpropagation through time.

Each measurement runs in a fresh process, so memory cached by earlier work cannot hide a peak: on CPU the
figure is the growth of the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
over its size before the step; on GPU it is ``torch.cuda.max_memory_allocated`` over the allocation before.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from captioning.benchmark.workload import Workload, build_decoder
from captioning.models.decoding import PAD
from captioning.models.cells import injected_input_term, lstm_layer
from captioning.models.decoder import RNNDecoder


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def window_loss(dec: RNNDecoder, v: Tensor, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Loss of one window of a long sequence, continuing from state ``(h, c)`` (B, H) each.

    Args:
        dec: A one-layer LSTM decoder with every-step injection.
        v: Image features (B, D).
        tokens: The window's inputs and targets, (B, W + 1).
    """
    rnn = dec.rnn
    x = dec.embed(tokens[:, :-1]).transpose(0, 1)  # (W, B, E)
    pre = injected_input_term(x, v, rnn.weight_ih_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0)  # (W, B, G)
    out, h, c = lstm_layer(pre, rnn.weight_hh_l0, h, c)  # (W, B, H)
    logits = dec.out(out.transpose(0, 1))  # (B, W, V)
    loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=PAD)
    return loss, h, c


def _train_long(w: Workload, device: torch.device, window: int) -> int:
    dec = build_decoder(w, device)
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(4, w.vocab_size, (w.long_batch, w.long_len + 1), generator=gen).to(device)
    v = torch.randn(w.long_batch, w.feature_dim, generator=gen).to(device)
    h = c = v.new_zeros(w.long_batch, w.hidden_dim)
    before = _start_peak(device)
    for start in range(0, w.long_len, window):
        loss, h, c = window_loss(dec, v, tokens[:, start : start + window + 1], h, c)
        loss.backward()
        h, c = h.detach(), c.detach()  # truncation: no gradient into the previous window
    return _peak_since(device, before)


def _start_peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    return _status_kib("VmRSS") * 1024


def _peak_since(device: torch.device, before: int) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return _status_kib("VmHWM") * 1024 - before


def _child(w: dict, device: str, window: int, threads: int, queue: mp.Queue) -> None:
    try:
        torch.set_num_threads(threads)
        queue.put(_train_long(Workload(**w), torch.device(device), window))
    except Exception as err:  # noqa: BLE001 - reported by the parent
        queue.put(f"{type(err).__name__}: {err}")


def peak_bytes(w: Workload, device: torch.device, window: int) -> int:
    """Peak extra memory of one forward + backward pass over the long sequence in windows of ``window``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(w.to_dict(), str(device), window, torch.get_num_threads(), queue))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, str):
        raise RuntimeError(f"memory measurement (window {window}) failed: {result}")
    return result


def bench_memory(w: Workload, device: torch.device) -> dict:
    """Peak memory for full vs truncated BPTT, or the reason it cannot be measured here."""
    if w.decoder != "lstm":
        return {"skipped": f"full vs truncated BPTT is measured for the LSTM, whose (h, c) the windows carry; "
                           f"{w.decoder} is not measured here"}
    if device.type == "cpu" and not Path("/proc/self/clear_refs").exists():
        return {"skipped": "peak resident memory needs Linux /proc (VmHWM)"}
    full, truncated = peak_bytes(w, device, w.long_len), peak_bytes(w, device, w.window)
    return {"sequence_length": w.long_len, "batch": w.long_batch, "window": w.window, "full_bptt_bytes": full,
            "truncated_bptt_bytes": truncated, "ratio": full / max(truncated, 1)}
