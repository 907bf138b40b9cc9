"""The benchmark report as text: a summary for the terminal and the README's markdown table."""

from __future__ import annotations


def _fmt(rate: dict) -> str:
    return f"{rate['median']:,.1f} [{rate['min']:,.1f}–{rate['max']:,.1f}]"


def summary(report: dict) -> str:
    """The headline figures as text lines (median [slowest–fastest repeat])."""
    m = report["machine"]
    lines = [f"workload {report['workload']}, decoder {report.get('decoder', 'lstm')} on {m['cpu']} "
             f"({m['threads']} threads), {m['device']}, torch {m['torch']}, {report['clock']} clock",
             f"sustained matmul rate: {report['matmul']['flops_per_s'] / 1e9:,.1f} GFLOP/s"]
    if "train" in report:
        t = report["train"]
        lines.append(f"train_tokens_per_s: {_fmt(t['train_tokens_per_s'])}; "
                     f"{t['fraction_of_matmul_rate']:.1%} of the sustained matmul rate ({_rates(t)})")
        lines.append(_breakdown(t))
        lines += [f"  {name}: {_fmt(r['tokens_per_s'])} tokens/s (ours is {r['ours_speedup']:.2f}x)"
                  for name, r in t["variants"].items()]
    if "decode" in report:
        d = report["decode"]
        lines += [f"{name}: {_fmt(r['captions_per_s'])} captions/s" for name, r in d["variants"].items()]
        if "baseline_skipped" in d:
            lines.append(f"baseline: skipped: {d['baseline_skipped']}")
        else:
            lines.append("speedup over baseline: " + ", ".join(f"{k} {v:.1f}x"
                                                              for k, v in d["speedup_over_baseline"].items()))
            lines.append(f"same captions as baseline: {d['same_captions_as_baseline']}")
    if "memory" in report:
        r = report["memory"]
        lines.append(r.get("skipped") or f"peak memory, {r['sequence_length']} tokens × {r['batch']}: full BPTT "
                     f"{r['full_bptt_bytes'] / 2**20:,.0f} MiB, truncated (window {r['window']}) "
                     f"{r['truncated_bptt_bytes'] / 2**20:,.0f} MiB")
    if "end_to_end" in report:
        r = report["end_to_end"]
        lines.append(f"end-to-end: skipped: {r['skipped']}" if "skipped" in r else
                     f"captioning caption: {_fmt(r['caption_images_per_s'])} images/s; encoder alone: "
                     f"{_fmt(r['encoder_images_per_s'])}; reading + encoder: "
                     f"{_fmt(r['reading_encoder_images_per_s'])}; decoding alone: {_fmt(r['decoding_images_per_s'])} "
                     f"(caption/encoder {r['caption_over_encoder']:.2f}, caption/(reading + encoder) "
                     f"{r['caption_over_reading_encoder']:.2f}; {r['images']} photos, beam "
                     f"{r['beam_size']}, {r['words']} words)" + _budget(r))
    return "\n".join(lines)



def _rates(t: dict) -> str:
    return (f"the higher of {t['first_matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s measured first and "
            f"{t['interleaved_matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s timed interleaved with the steps")


def _budget(r: dict) -> str:
    if "cpu_seconds_per_image" not in r:
        return ""
    per_image = ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in r["cpu_seconds_per_image"].items())
    return (f"\n  CPU ms per image (one thread): {per_image}; the encoder's share, the ceiling of caption/encoder "
            f"when both use the cores equally well: {r['encoder_share_of_cpu']:.2f}")


def _breakdown(t: dict) -> str:
    b = t["breakdown"]
    if "skipped" in b:
        return f"  where the step's time goes: skipped: {b['skipped']}"
    parts = ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in b["parts_seconds"].items())
    return (f"  step {b['step_seconds'] * 1e3:.1f} ms: {parts}, rest {b['rest_seconds'] * 1e3:.1f}; the GEMMs alone "
            f"reach {b['gemms_alone_fraction']:.1%} of the matmul rate, GEMMs + Adam + cross-entropy "
            f"{b['bound_fraction']:.1%}")


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def markdown(report: dict) -> str:
    """The README's performance table (median [slowest–fastest repeat]) for one benchmark run."""
    m, rows = report["machine"], []
    rows.append(("fp32 matmul rate of the best workload GEMM shape, measured first",
                 f"{report['matmul']['flops_per_s'] / 1e9:,.1f} GFLOP/s"))
    if "train" in report:
        t = report["train"]
        rows.append(("**train_tokens_per_s** (forward + backward + Adam)", _fmt(t["train_tokens_per_s"])))
        rows.append(("sustained matmul rate used for the fractions", _rates(t)))
        rows.append(("training GEMM rate / fraction of the sustained matmul rate",
                     f"{t['variants']['ours']['gemm_flops_per_s'] / 1e9:,.1f} GFLOP/s / "
                     f"**{t['fraction_of_matmul_rate']:.1%}**"))
        b = t["breakdown"]
        if "skipped" not in b:
            rows.append(("step time: the step's GEMMs / Adam / cross-entropy, each timed alone / the rest", " / ".join(
                f"{x * 1e3:.1f} ms" for x in (*b["parts_seconds"].values(), b["rest_seconds"]))))
            rows.append(("fraction of the matmul rate with only the GEMMs / only GEMMs + Adam + cross-entropy",
                         f"{b['gemms_alone_fraction']:.1%} / {b['bound_fraction']:.1%}"))
        rows += [(f"lever off: {name}", f"{_fmt(r['tokens_per_s'])} (ours {r['ours_speedup']:.2f}x faster)")
                 for name, r in t["variants"].items() if name != "ours"]
    if "decode" in report:
        d = report["decode"]
        rows += [(f"{name} captions/s", _fmt(r["captions_per_s"])) for name, r in d["variants"].items()]
        rows += [(f"**{name} speedup over the baseline**", f"**{x:.1f}x**")
                 for name, x in d["speedup_over_baseline"].items()]
    if "memory" in report and "skipped" not in report["memory"]:
        r = report["memory"]
        rows.append((f"peak memory, {r['batch']} × {r['sequence_length']} tokens: full / truncated BPTT "
                     f"(window {r['window']})", f"{_mib(r['full_bptt_bytes'])} / {_mib(r['truncated_bptt_bytes'])}"))
    if "end_to_end" in report and "skipped" not in report["end_to_end"]:
        r = report["end_to_end"]
        rows.append((f"`captioning caption` images/s (lite0, beam {r['beam_size']}, {r['words']} words, batch "
                     f"{r['batch_size']})", _fmt(r["caption_images_per_s"])))
        rows.append(("encoder alone / decoding alone images/s",
                     f"{_fmt(r['encoder_images_per_s'])} / {_fmt(r['decoding_images_per_s'])}"))
        rows.append(("the command's loader feeding the encoder (no decoding) images/s",
                     _fmt(r["reading_encoder_images_per_s"])))
        rows.append(("`captioning caption` ÷ encoder alone / ÷ loader + encoder",
                     f"{r['caption_over_encoder']:.2f} / {r['caption_over_reading_encoder']:.2f}"))
        if "cpu_seconds_per_image" in r:
            rows.append(("CPU ms per image, one thread: " + " / ".join(r["cpu_seconds_per_image"]),
                         " / ".join(f"{x * 1e3:.1f}" for x in r["cpu_seconds_per_image"].values())))
            rows.append(("encoder's share of that CPU work (ceiling of caption ÷ encoder at equal core efficiency)",
                         f"{r['encoder_share_of_cpu']:.2f}"))
    head = (f"Workload `{report['workload']}`, decoder `{report.get('decoder', 'lstm')}` on {m['cpu']}, "
            f"{m['threads']} thread(s), {m['device']}"
            f"{', ' + m['gpu'] if 'gpu' in m else ''}, torch {m['torch']}, {report['clock']} clock.\n\n")
    return head + "| figure | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
