"""What a sequence model costs and how its gradient flows: training time and memory against the sequence
length, the decoding state and time per generated token, and ``||dL/dx_t||`` back through time.

Memory is counted two ways (see ``docs/lab.md``, section 6):

* ``saved_bytes``: the distinct storages autograd saves for the backward pass, parameters excluded
  (:class:`captioning.lab.lm.SavedTensorMeter`, ``torch.autograd.graph.saved_tensors_hooks``). Exact and
  deterministic, but blind to temporaries that are freed before the backward pass.
* ``peak_rss_bytes``: the growth of the process's resident-set high-water mark (Linux ``VmHWM``, reset
  by writing ``5`` to ``/proc/self/clear_refs``, after ``malloc_trim(0)`` returned freed heap pages) over
  one forward and backward pass. Everything the process touched, temporaries included, but only to page
  granularity and only what the allocator had to fetch anew: meaningful for passes of megabytes, noise
  for tiny ones. ``None`` where the kernel does not offer the reset.
"""

from __future__ import annotations

import ctypes
import gc
import math
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from captioning.lab.lm import SavedTensorMeter
from captioning.lab.seqmodels import DecoderLM
from captioning.models.blocks import State
from captioning.models.decoding import START

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``log y`` against ``log x``: ``y ~ x^slope``."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need at least two (x, y) pairs, got {len(xs)} x and {len(ys)} y")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    if sxx == 0:
        raise ValueError("the x values are all equal")
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` entry in KiB (``VmRSS``, ``VmHWM``)."""
    match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    if match is None:
        raise OSError(f"no {key} in {_STATUS}")
    return int(match.group(1))


def _release_free_memory() -> None:
    """Hands memory that glibc's ``malloc`` keeps after ``free`` back to the kernel, where possible.

    Without this, a pass may reuse pages that are already resident, and the high-water mark misses it.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_growth(fn: Callable[[], object]) -> int | None:
    """Bytes by which the resident-set high-water mark rises above the current RSS while ``fn()`` runs.

    Returns ``None`` where ``/proc/self/clear_refs`` cannot reset the mark (not Linux, or not allowed).
    """
    gc.collect()
    _release_free_memory()
    try:
        _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
        before = _status_kib("VmRSS")
    except OSError:
        fn()
        return None
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024


def state_bytes(state: State) -> int:
    """Bytes of every tensor of a decoding state."""
    return sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, Tensor))


def _train_pass(model: DecoderLM, tokens: Tensor) -> None:
    """Teacher-forced forward and backward on ``tokens`` (B, T + 1)."""
    model.zero_grad(set_to_none=True)
    logits, _ = model(tokens[:, :-1])  # (B, T, V)
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()


def training_cost(model: DecoderLM, length: int, batch: int, repeats: int, generator: torch.Generator) -> dict:
    """Time and memory of one teacher-forced training pass over ``batch`` random sequences of ``length``.

    The first pass is untimed: it counts the saved bytes and the peak RSS (and warms up). Then ``seconds``
    is the fastest of ``repeats`` timed passes: the minimum is least disturbed by other processes.
    """
    model.train()
    tokens = torch.randint(4, model.decoder.vocab_size, (batch, length + 1), generator=generator)
    meter = SavedTensorMeter(model)

    def counted() -> None:
        model.zero_grad(set_to_none=True)
        with meter:
            logits, _ = model(tokens[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()

    rss = peak_rss_growth(counted)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _train_pass(model, tokens)
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    tokens_seen = batch * length
    return {"length": length, "seconds": min(times), "seconds_per_token": min(times) / tokens_seen,
            "saved_bytes": meter.bytes, "saved_bytes_per_token": meter.bytes / tokens_seen,
            "peak_rss_bytes": rss, "peak_rss_bytes_per_token": None if rss is None else rss / tokens_seen}


@torch.no_grad()
def generation_cost(model: DecoderLM, points: Sequence[int], probe: int) -> list[dict]:
    """Greedy decoding of one sequence: the state's size and the time per token after ``n`` tokens.

    Args:
        model: The language model.
        points: Numbers of tokens already generated at which to measure.
        probe: Steps after each point whose median time is its time per token.

    Returns:
        Per point: ``generated``, ``state_bytes`` (the state after that many steps) and ``seconds_per_token``.
    """
    model.eval()
    state, tokens = model.start(1), torch.full((1,), START)
    times, sizes = [], {}
    for n in range(1, max(points) + probe + 1):
        start = time.perf_counter()
        logits, state = model.step(tokens, state)  # (1, V)
        times.append(time.perf_counter() - start)  # times[n - 1]: step n
        tokens = logits.argmax(dim=-1)
        if n in points:
            sizes[n] = state_bytes(state)
    model.train()
    return [{"generated": n, "state_bytes": sizes[n], "seconds_per_token": statistics.median(times[n:n + probe])}
            for n in sorted(points)]


def input_gradient_norms(model: DecoderLM, tokens: Tensor) -> list[float]:
    """``||dL/dx_t||`` of the input embeddings for the cross-entropy ``L`` at the last position only.

    Args:
        model: The language model (its decoder's ``embed`` produces ``x_t``).
        tokens: Character ids (B, T + 1): inputs ``[:, :-1]``, the last target ``[:, -1]``.

    Returns:
        The mean over the batch of the norm at ``k`` steps back from the loss, k = 0 … T - 1.
    """
    captured: list[Tensor] = []
    hook = model.decoder.embed.register_forward_hook(lambda module, args, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(tokens[:, :-1])  # (B, T, V)
    finally:
        hook.remove()
        model.train(was_training)
    loss = F.cross_entropy(logits[:, -1], tokens[:, -1], reduction="sum")  # each row's gradient is its own
    (grad,) = torch.autograd.grad(loss, captured[0])  # (B, T, E)
    return grad.norm(dim=-1).mean(dim=0).flip(0).tolist()  # (T,): index k = k steps back
