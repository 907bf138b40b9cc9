"""``captioning benchmark``: training and decoding throughput on a fixed workload, one run, one report."""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from pathlib import Path

import torch

from captioning.benchmark.decode import bench_decoding
from captioning.benchmark.endtoend import bench_end_to_end
from captioning.benchmark.memory import bench_memory
from captioning.benchmark.report import markdown, summary
from captioning.benchmark.timing import matmul_rate
from captioning.benchmark.train import bench_training
from captioning.benchmark.workload import DECODER_CHOICES, WORKLOADS, workload_gemm_shapes
from captioning.core.io import write_json_atomic
from captioning.core.runtime import keep_freed_memory

SECTIONS = ("train", "decode", "memory", "end-to-end")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captioning benchmark", description=__doc__)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="matched",
                   help="matched: vocabulary 10k, embedding/hidden 512, 2048-d feature, batch 64, 16 words")
    p.add_argument("--decoder", choices=DECODER_CHOICES, default="lstm",
                   help="lstm: the codebase's decoder with every lever; rwkv, mamba, transformer: one block of "
                        "the workload's hidden width; show_attend_tell, att2in, updown: attention over a 7×7 grid of "
                        "feature-width regions (LSTM-only levers, breakdown, baseline, BPTT memory skipped)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--json", type=Path, help="also write every figure (all repeats) to this JSON file")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's, i.e. OMP_NUM_THREADS)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each measured function")
    p.add_argument("--repeats", type=int, default=7, help="timed calls of each measured function")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time, steadier on a shared machine with --threads 1 "
                        "(for relative comparisons only)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections not to run")
    p.add_argument("--photos", type=Path, help="JPEG folder for end-to-end captioning (default ../shared/coco-mini)")
    p.add_argument("--e2e-images", type=int, default=64, help="photos captioned per end-to-end repeat")
    p.add_argument("--e2e-batch-size", type=int, default=32)
    p.add_argument("--e2e-words", type=int, help="caption length end to end (default: the workload's; 10 stands "
                   "for a trained decoder's average)")
    p.add_argument("--e2e-beam-size", type=int, default=1, help="beam size end to end (the command's default: 1)")
    p.add_argument("--markdown", action="store_true", help="also print the README's performance table")
    return p


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(args: argparse.Namespace) -> dict:
    """Runs every section not skipped and returns the report."""
    tuned = keep_freed_memory()  # as `captioning caption` does, so both sides of every ratio share it
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("captioning benchmark: --device cuda but no CUDA device is available")
    w = replace(WORKLOADS[args.workload], decoder=args.decoder)
    timing = dict(warmup=args.warmup, repeats=args.repeats, clock=args.clock)
    report = {"workload": args.workload, "decoder": args.decoder, "sizes": w.to_dict(), "machine": machine(device),
              "clock": args.clock, "keep_freed_memory": tuned}
    rate = matmul_rate(workload_gemm_shapes(w), device, seconds=w.matmul_seconds, repeats=args.repeats,
                       clock=args.clock)
    report["matmul"] = rate
    if "train" not in args.skip:
        report["train"] = bench_training(w, device, rate, **timing)
    if "decode" not in args.skip:
        report["decode"] = bench_decoding(w, device, **timing)
    if "memory" not in args.skip:
        report["memory"] = bench_memory(w, device)
    if "end-to-end" not in args.skip:
        e2e = replace(w, words=args.e2e_words or w.words, beam_size=args.e2e_beam_size)
        report["end_to_end"] = bench_end_to_end(e2e, device, args.photos, args.e2e_images, args.e2e_batch_size,
                                                warmup=1, repeats=max(1, args.repeats // 2), clock=args.clock)
    return report


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``captioning benchmark``; prints the summary and returns the report."""
    args = _parser().parse_args(argv)
    report = run(args)
    print(summary(report))
    if args.markdown:
        print(markdown(report))
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return report
