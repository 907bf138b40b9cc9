"""Hallucination report (``captioning evaluate --report DIR``).

From the per-image CHAIR results of METRICS.json it computes

- per category: mentions, hallucinated mentions and the hallucination rate (hallucinated / mentions);
- the most frequently hallucinated categories and the ground-truth categories of the images they were
  hallucinated in (the co-occurrence bias: "a fork is mentioned because a dining table is there");
- caption length (words without punctuation) against CHAIRs and CHAIRi, in length bins;

and writes ``report.json``, ``report.md`` and ``hallucination.png`` (a bar chart of both).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

LENGTH_BINS = ((1, 5), (6, 8), (9, 11), (12, 14), (15, 19), (20, None))  # inclusive word-count ranges


def per_category(per_image: Sequence[Mapping]) -> dict[str, dict]:
    """Category -> ``{"mentions", "hallucinated", "rate"}`` (repeated mentions counted, as in CHAIRi)."""
    mentions = Counter(m["category"] for entry in per_image for m in entry["mentioned"])
    bad = Counter(m["category"] for entry in per_image for m in entry["hallucinated"])
    return {c: {"mentions": mentions[c], "hallucinated": bad[c], "rate": bad[c] / mentions[c]}
            for c in sorted(mentions)}


def top_hallucinated(per_image: Sequence[Mapping], k: int = 10, k_cooccurring: int = 5) -> list[dict]:
    """The ``k`` most hallucinated categories, each with the images it was hallucinated in and the
    ground-truth categories most often present in those images."""
    bad = Counter(m["category"] for entry in per_image for m in entry["hallucinated"])
    rows = []
    for category, count in sorted(bad.items(), key=lambda kv: (-kv[1], kv[0]))[:k]:
        images = [e for e in per_image if any(m["category"] == category for m in e["hallucinated"])]
        together = Counter(c for e in images for c in set(e["ground_truth"]))
        ranked = sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))[:k_cooccurring]
        rows.append({"category": category, "hallucinated": count, "images": len(images),
                     "co_occurring": [[c, n] for c, n in ranked]})
    return rows


def _bin_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def by_length(per_image: Sequence[Mapping], lengths: Mapping[int, int]) -> list[dict]:
    """CHAIRs and CHAIRi of captions grouped by length (``lengths``: image id -> words); empty bins omitted."""
    rows = []
    for low, high in LENGTH_BINS:
        group = [e for e in per_image
                 if lengths[e["image_id"]] >= low and (high is None or lengths[e["image_id"]] <= high)]
        if not group:
            continue
        mentions = sum(len(e["mentioned"]) for e in group)
        bad = sum(len(e["hallucinated"]) for e in group)
        rows.append({"words": _bin_label(low, high), "captions": len(group),
                     "CHAIRs": sum(bool(e["hallucinated"]) for e in group) / len(group),
                     "CHAIRi": bad / mentions if mentions else 0.0, "mentions": mentions})
    short = [e for e in per_image if lengths[e["image_id"]] < LENGTH_BINS[0][0]]
    if short:
        rows.insert(0, {"words": "0", "captions": len(short), "CHAIRs": 0.0, "CHAIRi": 0.0, "mentions": 0})
    return rows


def hallucination_report(metrics: Mapping, lengths: Mapping[int, int], k: int = 10) -> dict:
    """The report's numbers from METRICS.json content (with CHAIR) and each caption's word count."""
    per_image = metrics["per_image"]
    return {"CHAIRs": metrics["CHAIRs"], "CHAIRi": metrics["CHAIRi"], "chair_mode": metrics["chair_mode"],
            "binding_errors": metrics.get("binding_errors"), "captions": len(per_image),
            "mean_words": sum(lengths.values()) / len(lengths) if lengths else 0.0,
            "per_category": per_category(per_image), "top_hallucinated": top_hallucinated(per_image, k),
            "by_length": by_length(per_image, lengths)}


def report_markdown(report: Mapping) -> str:
    """The report as Markdown tables."""
    lines = ["# Hallucination report", "",
             f"CHAIRs {report['CHAIRs']:.4f}, CHAIRi {report['CHAIRi']:.4f} (CHAIR mode {report['chair_mode']}), "
             f"{report['captions']} captions, {report['mean_words']:.1f} words on average."
             + ("" if report.get("binding_errors") is None else
                f" Binding errors (mentioned colour–object pairs not in the scene): {report['binding_errors']:.4f}."),
             "", "## Most frequently hallucinated objects", "",
             "| object | hallucinated mentions | images | ground-truth objects in those images (images) |",
             "| --- | ---: | ---: | --- |"]
    lines += [f"| {r['category']} | {r['hallucinated']} | {r['images']} | "
              + ", ".join(f"{c} ({n})" for c, n in r["co_occurring"]) + " |" for r in report["top_hallucinated"]]
    lines += ["", "## Per category", "", "| category | mentions | hallucinated | rate |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {c} | {v['mentions']} | {v['hallucinated']} | {v['rate']:.3f} |"
              for c, v in report["per_category"].items()]
    lines += ["", "## Caption length vs CHAIR", "", "| words | captions | CHAIRs | CHAIRi |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['words']} | {r['captions']} | {r['CHAIRs']:.3f} | {r['CHAIRi']:.3f} |"
              for r in report["by_length"]]
    return "\n".join(lines) + "\n"


def report_chart(report: Mapping) -> bytes:
    """PNG bytes: hallucination rate of the most hallucinated categories, and CHAIR by caption length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = report["top_hallucinated"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["category"] for r in top]
    left.bar(names, [report["per_category"][c]["rate"] for c in names], color="#d9534f")
    left.set_title("hallucination rate of the most hallucinated objects")
    left.set_ylabel("hallucinated / mentions")
    left.tick_params(axis="x", rotation=45)
    plt.setp(left.get_xticklabels(), ha="right")
    bins = [f"{r['words']}\n(n={r['captions']})" for r in report["by_length"]]
    x = range(len(bins))
    right.bar([i - 0.2 for i in x], [r["CHAIRs"] for r in report["by_length"]], width=0.4, label="CHAIRs")
    right.bar([i + 0.2 for i in x], [r["CHAIRi"] for r in report["by_length"]], width=0.4, label="CHAIRi")
    right.set_xticks(list(x), bins)
    right.set_xlabel("caption length (words)")
    right.set_title("CHAIR by caption length")
    right.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def render_report(metrics: Mapping, lengths: Mapping[int, int], folder: Path) -> dict[Path, str | bytes]:
    """The report's files (``report.json``, ``report.md``, ``hallucination.png`` in ``folder``)."""
    report = hallucination_report(metrics, lengths)
    return {folder / "report.json": json.dumps(report, indent=1, ensure_ascii=False) + "\n",
            folder / "report.md": report_markdown(report), folder / "hallucination.png": report_chart(report)}
