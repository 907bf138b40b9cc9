"""Timing primitives: warm-up, repeats, median and spread, interleaved comparisons, the matmul rate."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Timing:
    """Seconds of every repeat of one measured call.

    ``cpu`` clock times are process CPU seconds: with one thread they are far less disturbed by other
    processes than wall time, so they suit relative comparisons on a shared machine (never headline figures).
    """

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, work: float) -> dict[str, float]:
        """``work`` per second at the median repeat, with the slowest and fastest repeats as the spread."""
        return {"median": work / self.median, "min": work / max(self.seconds), "max": work / min(self.seconds),
                "repeats": len(self.seconds)}


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work so that a timer reads completed work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 1, repeats: int = 5,
            clock: str = "wall") -> dict[str, Timing]:
    """Times several calls *interleaved* (A, B, A, B, …) so slow drifts of the machine hit all of them alike.

    Args:
        fns: Name → a call doing one unit of work.
        device: Where the work runs (GPU work is synchronized before each reading).
        warmup: Untimed calls of each function first (allocator, caches, lazy initialization).
        repeats: Timed calls of each function.
        clock: ``wall`` (elapsed time) or ``cpu`` (process CPU time).
    """
    now = CLOCKS[clock]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    out = {name: Timing([]) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = now()
            fn()
            synchronize(device)
            out[name].seconds.append(now() - start)
    return out


def gemm_flops(m: int, k: int, n: int) -> float:
    """Floating-point operations of an (m, k) @ (k, n) product: one multiply and one add per term."""
    return 2.0 * m * k * n


def matmul_rate(shapes: list[tuple[int, int, int]], device: torch.device, dtype: torch.dtype = torch.float32,
                seconds: float = 2.0, repeats: int = 5, clock: str = "wall") -> dict:
    """The machine's sustained matrix-multiply rate on the given GEMM shapes, in the current thread setting.

    Each shape ``(m, k, n)`` is multiplied back to back for about ``seconds`` per repeat (so turbo and
    thermal limits are those of sustained work); the rate of a shape is its median repeat, and the machine's
    sustained rate is the best shape's (the fraction reported for training is relative to it).

    Returns:
        ``{"flops_per_s": best median, "shapes": [{"m", "k", "n", "flops_per_s", "min", "max"}, …]}``.
    """
    rows = []
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        out = torch.empty(m, n, device=device, dtype=dtype)
        torch.mm(a, b, out=out)
        synchronize(device)
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 4:  # calibrate the calls per repeat
            torch.mm(a, b, out=out)
            synchronize(device)
            calls += 1
        per_repeat = max(1, round(calls * 4 / repeats))

        def run(a=a, b=b, out=out, per_repeat=per_repeat) -> None:
            for _ in range(per_repeat):
                torch.mm(a, b, out=out)

        timing = measure({"mm": run}, device, warmup=0, repeats=repeats, clock=clock)["mm"]
        rate = timing.rate(gemm_flops(m, k, n) * per_repeat)
        rows.append({"m": m, "k": k, "n": n, "flops_per_s": rate["median"], "min": rate["min"],
                     "max": rate["max"]})
    return {"flops_per_s": max(r["flops_per_s"] for r in rows), "shapes": rows}
