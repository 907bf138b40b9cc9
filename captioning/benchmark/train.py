"""Training throughput of the decoder (forward + backward + Adam) and its levers, measured interleaved."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from captioning.benchmark.timing import gemm_flops, measure
from captioning.benchmark.workload import Workload, build_decoder, train_step_flops, training_batch
from captioning.models.decoding import PAD


def _adam(dec: nn.Module, kind: str) -> torch.optim.Optimizer:
    options = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[kind]
    return torch.optim.Adam(dec.parameters(), lr=1e-4, **options)


def train_step_fn(dec: nn.Module, opt: torch.optim.Optimizer, v: torch.Tensor, tokens: torch.Tensor,
                  precompute_image_term: bool = True, autocast: torch.dtype | None = None) -> Callable[[], None]:
    """One step as the training module runs it: teacher-forced logits, cross-entropy over all positions
    ignoring ``<PAD>``, ``zero_grad``, backward, optimizer step."""
    device_type = v.device.type

    def step() -> None:
        dec.precompute_image_term = precompute_image_term
        ctx = torch.autocast(device_type, autocast) if autocast else contextlib.nullcontext()
        with ctx:
            logits = dec(v, tokens[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def train_variants(w: Workload, device: torch.device) -> dict[str, Callable[[], None]]:
    """The codebase's training step and the same step without one lever each (same weights and batch)."""
    v, tokens = training_batch(w, device)
    variants = {}
    levers = (("ours", "fused", True), ("concat [x; v] fused nn.LSTM", "fused", False),
              ("foreach Adam", "foreach", True), ("for-loop Adam", "for-loop", True))
    for name, adam, precompute in levers if w.decoder == "lstm" else levers[:1]:  # the levers are the LSTM's
        dec = build_decoder(w, device)
        variants[name] = train_step_fn(dec, _adam(dec, adam), v, tokens, precompute)
    if device.type == "cuda":
        dec = build_decoder(w, device)
        variants["ours bf16 autocast"] = train_step_fn(dec, _adam(dec, "fused"), v, tokens, True, torch.bfloat16)
    return variants


class _GemmRecorder(TorchDispatchMode):
    """Records the overload, operand layouts and output layout of every matrix product run inside the mode."""

    PACKETS = (torch.ops.aten.mm, torch.ops.aten.addmm)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in self.PACKETS:
            layout = [(t.shape, t.stride()) for t in args if isinstance(t, torch.Tensor)]
            out = kwargs.get("out")
            self.calls.append((func, layout, None if out is None else (out.shape, out.stride())))
        return func(*args, **kwargs)


def step_gemms(step: Callable[[], None], device: torch.device) -> tuple[Callable[[], None], float]:
    """The matrix products of one call of ``step`` (same shapes, same memory layouts, same output buffers
    or not), replayed back to back on random data: how fast the step would be if only its GEMMs cost time.

    Returns:
        The replay, and its FLOPs (equal to :func:`train_step_flops` for a training step).
    """
    with _GemmRecorder() as recorder:
        step()

    def tensor(layout: tuple) -> torch.Tensor:
        return torch.empty_strided(*layout, device=device).normal_()

    calls = [(func, [tensor(t) for t in layout], {} if out is None else {"out": tensor(out)})
             for func, layout, out in recorder.calls]
    flops = sum(gemm_flops(*a.shape, b.shape[1]) for _, operands, _ in calls for a, b in [operands[-2:]])

    def run() -> None:
        for func, operands, kwargs in calls:
            func(*operands, **kwargs)

    return run, flops


def counted_step_flops(w: Workload, device: torch.device) -> float:
    """FLOPs of one training step's forward and backward as ``torch.utils.flop_counter`` counts them (matrix
    products, attention, convolutions): the work measure of decoders other than the LSTM, whose GEMMs
    :func:`train_step_flops` counts by hand."""
    dec = build_decoder(w, device)
    v, tokens = training_batch(w, device)
    with FlopCounterMode(display=False) as counter:
        logits = dec(v, tokens[:, :-1])  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), ignore_index=PAD).backward()
    return float(counter.get_total_flops())


def _adam_alone(w: Workload, device: torch.device) -> Callable[[], None]:
    """The optimizer step alone, on the gradients of one training step."""
    v, tokens = training_batch(w, device)
    dec = build_decoder(w, device)
    opt = _adam(dec, "fused")
    train_step_fn(dec, opt, v, tokens)()
    return opt.step


def _cross_entropy_alone(w: Workload, device: torch.device) -> Callable[[], None]:
    """Cross-entropy forward and backward alone, on logits of the training step's shape."""
    _, tokens = training_batch(w, device)
    logits = torch.randn(w.batch_size * w.steps, w.vocab_size, device=device, requires_grad=True)
    targets = tokens[:, 1:].flatten()

    def run() -> None:
        F.cross_entropy(logits, targets, ignore_index=PAD).backward()
        logits.grad = None

    return run


def _reference_gemms(matmul: dict, flops: float, device: torch.device) -> tuple[Callable[[], None], float]:
    """Back-to-back products of the best-rate workload shape doing about one training step's FLOPs."""
    best = max(matmul["shapes"], key=lambda r: r["flops_per_s"])
    a = torch.randn(best["m"], best["k"], device=device)
    b = torch.randn(best["k"], best["n"], device=device)
    out = torch.empty(best["m"], best["n"], device=device)
    calls = max(1, round(flops / gemm_flops(best["m"], best["k"], best["n"])))

    def run() -> None:
        for _ in range(calls):
            torch.mm(a, b, out=out)

    return run, calls * gemm_flops(best["m"], best["k"], best["n"])


def bench_training(w: Workload, device: torch.device, matmul: dict, warmup: int, repeats: int,
                   clock: str) -> dict:
    """Tokens per second and GEMM FLOP rate of every training variant, the fraction of the sustained matmul
    rate the codebase's step achieves, and where the step's time goes (:func:`_breakdown`).

    The best-shape GEMM rate is measured twice: first (``matmul``, from :func:`matmul_rate`) and as
    reference GEMMs timed interleaved with the steps (robust to the machine's speed drifting). The headline
    ``fraction_of_matmul_rate`` is against the higher of the two; both single fractions are kept too."""
    lstm = w.decoder == "lstm"
    tokens, flops = w.batch_size * w.steps, train_step_flops(w) if lstm else counted_step_flops(w, device)
    reference, reference_flops = _reference_gemms(matmul, flops, device)
    variants = train_variants(w, device)
    parts, gemm_work = {}, flops
    if lstm:
        gemms, gemm_work = step_gemms(variants["ours"], device)
        parts = {"the step's GEMMs alone": gemms, "Adam step alone": _adam_alone(w, device),
                 "cross-entropy alone": _cross_entropy_alone(w, device)}
    if gemm_work != flops:  # e.g. cuDNN's fused LSTM runs its GEMMs inside one kernel, out of sight
        parts = {}
    timings = measure({**variants, "reference GEMMs": reference, **parts}, device, warmup, repeats, clock)
    reference_rate = reference_flops / timings.pop("reference GEMMs").median
    parts = {name: timings.pop(name).median for name in parts}
    out = {"flops_per_step": flops, "tokens_per_step": tokens, "variants": {},
           "first_matmul_flops_per_s": matmul["flops_per_s"], "interleaved_matmul_flops_per_s": reference_rate}
    for name, t in timings.items():
        out["variants"][name] = {"tokens_per_s": t.rate(tokens), "gemm_flops_per_s": flops / t.median,
                                 "seconds": t.seconds}
    ours = out["variants"]["ours"]
    out["train_tokens_per_s"] = ours["tokens_per_s"]
    # The machine's speed drifts: the best-shape GEMM rate is the higher of its two measurements in the run.
    peak = out["sustained_matmul_flops_per_s"] = max(matmul["flops_per_s"], reference_rate)
    out["fraction_of_matmul_rate"] = ours["gemm_flops_per_s"] / peak
    out["fraction_of_first_matmul_rate"] = ours["gemm_flops_per_s"] / matmul["flops_per_s"]
    out["fraction_of_interleaved_matmul_rate"] = ours["gemm_flops_per_s"] / reference_rate
    for name, row in out["variants"].items():
        row["ours_speedup"] = ours["tokens_per_s"]["median"] / row["tokens_per_s"]["median"]
    out["breakdown"] = (_breakdown(flops, flops / ours["gemm_flops_per_s"], parts, peak) if parts else
                        {"skipped": f"the step's recorded GEMMs ({gemm_work:.4g} FLOPs) are not all of its "
                                    f"{flops:.4g} GEMM FLOPs (fused kernels)"} if lstm else
                        {"skipped": f"the breakdown and the levers are the LSTM's; {w.decoder}'s FLOPs are those "
                                    "torch.utils.flop_counter counts (products, attention, convolutions)"})
    return out


def _breakdown(flops: float, step_seconds: float, parts: dict[str, float], matmul_rate: float) -> dict:
    """Where a step's time goes: its GEMMs, the optimizer and the cross-entropy each timed alone, the rest
    (LSTM gate arithmetic, embedding gradient, bias sums, autograd), and the fraction of the matmul rate
    the step could reach if only the parts timed alone cost time (an upper bound)."""
    floor = sum(parts.values())
    return {"step_seconds": step_seconds, "parts_seconds": parts, "rest_seconds": step_seconds - floor,
            "gemms_alone_fraction": flops / parts["the step's GEMMs alone"] / matmul_rate,
            "bound_fraction": flops / floor / matmul_rate}
