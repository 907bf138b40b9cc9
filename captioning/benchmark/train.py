"""Training throughput of the decoder (forward + backward + Adam) and its levers, measured interleaved."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from captioning.benchmark.timing import gemm_flops, measure
from captioning.benchmark.workload import Workload, build_decoder, train_step_flops, training_batch
from captioning.decoding import PAD
from captioning.models.decoder import RNNDecoder


def _adam(dec: RNNDecoder, kind: str) -> torch.optim.Optimizer:
    options = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[kind]
    return torch.optim.Adam(dec.parameters(), lr=1e-4, **options)


def train_step_fn(dec: RNNDecoder, opt: torch.optim.Optimizer, v: torch.Tensor, tokens: torch.Tensor,
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
    for name, adam, precompute in (("ours", "fused", True), ("concat [x; v] fused nn.LSTM", "fused", False),
                                   ("foreach Adam", "foreach", True), ("for-loop Adam", "for-loop", True)):
        dec = build_decoder(w, device)
        variants[name] = train_step_fn(dec, _adam(dec, adam), v, tokens, precompute)
    if device.type == "cuda":
        dec = build_decoder(w, device)
        variants["ours bf16 autocast"] = train_step_fn(dec, _adam(dec, "fused"), v, tokens, True, torch.bfloat16)
    return variants


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
    """Tokens per second and GEMM FLOP rate of every training variant, and the fraction of the sustained
    matmul rate the codebase's step achieves: against ``matmul`` (from :func:`matmul_rate`) and against
    reference GEMMs timed interleaved with the steps (robust to the machine's load drifting)."""
    tokens, flops = w.batch_size * w.steps, train_step_flops(w)
    reference, reference_flops = _reference_gemms(matmul, flops, device)
    timings = measure({**train_variants(w, device), "reference GEMMs": reference}, device, warmup, repeats, clock)
    reference_rate = reference_flops / timings.pop("reference GEMMs").median
    out = {"flops_per_step": flops, "tokens_per_step": tokens, "variants": {},
           "interleaved_matmul_flops_per_s": reference_rate}
    for name, t in timings.items():
        out["variants"][name] = {"tokens_per_s": t.rate(tokens), "gemm_flops_per_s": flops / t.median,
                                 "seconds": t.seconds}
    ours = out["variants"]["ours"]
    out["train_tokens_per_s"] = ours["tokens_per_s"]
    out["fraction_of_matmul_rate"] = ours["gemm_flops_per_s"] / matmul["flops_per_s"]
    out["fraction_of_interleaved_matmul_rate"] = ours["gemm_flops_per_s"] / reference_rate
    for name, row in out["variants"].items():
        row["ours_speedup"] = ours["tokens_per_s"]["median"] / row["tokens_per_s"]["median"]
    return out
