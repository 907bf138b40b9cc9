"""`captioning benchmark` runs on a tiny workload; its FLOP count is the GEMM work PyTorch actually does."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import captioning.benchmark.train as bench_train
from captioning.cli.benchmark import main
from captioning.benchmark.report import markdown, summary
from captioning.benchmark.timing import matmul_rate
from captioning.benchmark.train import step_gemms, train_step_fn
from captioning.benchmark.workload import (WORKLOADS, Workload, build_decoder, train_step_flops, training_batch,
                                          workload_gemm_shapes)
from conftest import shared_available


def test_benchmark_runs_on_the_tiny_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    photos = shared_available("coco-mini")  # end to end needs ../shared/coco-mini photos (always there in CI)
    skip = [] if photos else ["--skip", "end-to-end"]
    main(["--workload", "tiny", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--json", str(out),
          "--e2e-images", "2", "--e2e-batch-size", "2", "--markdown", *skip])
    report = json.loads(out.read_text())
    w = WORKLOADS["tiny"]
    assert report["matmul"]["flops_per_s"] > 0
    train = report["train"]
    assert train["flops_per_step"] == train_step_flops(w) and train["fraction_of_matmul_rate"] > 0
    assert train["fraction_of_interleaved_matmul_rate"] > 0
    # The sustained rate is the higher of its two measurements, so the headline fraction is the lower one.
    assert train["fraction_of_matmul_rate"] == min(train["fraction_of_first_matmul_rate"],
                                                   train["fraction_of_interleaved_matmul_rate"])
    assert {"ours", "concat [x; v] fused nn.LSTM", "foreach Adam"} <= set(train["variants"])
    parts = train["breakdown"]["parts_seconds"]
    assert set(parts) == {"the step's GEMMs alone", "Adam step alone", "cross-entropy alone"}
    assert all(seconds > 0 for seconds in parts.values())
    # Adam and the cross-entropy add time to the GEMMs: the bound lies below what the GEMMs alone allow.
    assert 0 < train["breakdown"]["bound_fraction"] < train["breakdown"]["gemms_alone_fraction"]
    decode = report["decode"]
    # The baseline copies the decoder's weights: both must decode exactly the same captions.
    assert decode["same_captions_as_baseline"] == {"greedy": True, f"beam{w.beam_size}": True}
    assert decode["greedy_captions_per_s"]["median"] > 0 and set(decode["speedup_over_baseline"]) == {
        "greedy", f"beam{w.beam_size}"}
    memory = report["memory"]
    assert memory["full_bptt_bytes"] > 0 and memory["truncated_bptt_bytes"] > 0
    if photos:
        e2e = report["end_to_end"]
        assert e2e["images"] == 2 and e2e["caption_images_per_s"]["median"] > 0
        assert set(e2e["cpu_seconds_per_image"]) == {"reading", "encoder", "decoding"}
        assert 0 < e2e["encoder_share_of_cpu"] < 1
        assert e2e["reading_encoder_images_per_s"]["median"] > 0 and e2e["caption_over_reading_encoder"] > 0


def test_flop_count_equals_the_gemms_pytorch_runs() -> None:
    w = Workload(vocab_size=40, embed_dim=6, hidden_dim=5, feature_dim=7, batch_size=3, words=4)
    dec = build_decoder(w, torch.device("cpu"))
    v, tokens = training_batch(w, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        logits = dec(v, tokens[:, :-1])  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    assert counter.get_total_flops() == train_step_flops(w)


def test_gemm_replay_runs_exactly_the_training_steps_gemms() -> None:
    w = Workload(vocab_size=40, embed_dim=6, hidden_dim=5, feature_dim=7, batch_size=3, words=4)
    dec = build_decoder(w, torch.device("cpu"))
    v, tokens = training_batch(w, torch.device("cpu"))
    step = train_step_fn(dec, torch.optim.Adam(dec.parameters()), v, tokens)
    replay, flops = step_gemms(step, torch.device("cpu"))
    assert flops == train_step_flops(w)
    with FlopCounterMode(display=False) as counter:
        replay()
    assert counter.get_total_flops() == train_step_flops(w)


def test_gemm_replay_notices_gemms_hidden_in_a_fused_kernel() -> None:
    # The fused nn.LSTM runs its products inside one kernel (as cuDNN does on GPUs): the recorder cannot see
    # them, and the benchmark then skips the breakdown instead of reporting a wrong one.
    w = Workload(vocab_size=40, embed_dim=6, hidden_dim=5, feature_dim=7, batch_size=3, words=4)
    dec = build_decoder(w, torch.device("cpu"))
    v, tokens = training_batch(w, torch.device("cpu"))
    step = train_step_fn(dec, torch.optim.Adam(dec.parameters()), v, tokens, precompute_image_term=False)
    _, flops = step_gemms(step, torch.device("cpu"))
    assert flops < train_step_flops(w)


def test_breakdown_is_skipped_not_wrong_when_gemms_are_hidden(monkeypatch) -> None:
    w = WORKLOADS["tiny"]
    monkeypatch.setattr(bench_train, "step_gemms", lambda step, device: (lambda: None, 0.0))  # nothing recorded
    matmul = matmul_rate(workload_gemm_shapes(w), torch.device("cpu"), seconds=0.02, repeats=1)
    train = bench_train.bench_training(w, torch.device("cpu"), matmul, warmup=0, repeats=1, clock="wall")
    assert "fused kernels" in train["breakdown"]["skipped"] and train["fraction_of_matmul_rate"] > 0
    report = {"workload": "tiny", "machine": {"cpu": "x", "threads": 1, "device": "cpu", "torch": "t"},
              "clock": "wall", "matmul": matmul, "train": train}
    assert "where the step's time goes: skipped" in summary(report)
    assert "step time" not in markdown(report)
