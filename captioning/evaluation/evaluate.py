"""COCO caption metrics and CHAIR of a COCO results file, and its outputs (``captioning evaluate``).

Usage::

    captioning evaluate --results RESULTS.json --annotations captions_val2017.json \\
        [--instances instances_val2017.json --synonyms synonyms.txt] [--output METRICS.json] \\
        [--backend auto|pycocoevalcap|python] [--chair-mode reference|fixed] [--gallery DIR] [--report DIR]

Everything is read and checked, and every output is computed in memory, before the first file is written;
each file is written atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from captioning.core.io import atomic_path, write_text_atomic
from captioning.data.coco import read_instances
from captioning.data.results import InputError, ResultRow, check_known_ids, read_annotations, read_results
from captioning.evaluation.toolkit import BACKENDS, METRIC_NAMES, CaptionScores, score_captions
from captioning.evaluation.chair import ChairScores, chair_scores, mention_dicts
from captioning.evaluation.gallery import GalleryItem, render_gallery
from captioning.evaluation.report import render_report
from captioning.metrics.chair import synonyms_path, table_for

CAPTION_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
CHAIR_MODES = ("reference", "fixed")


def _per_image(rows: Sequence[ResultRow], per_image_scores: Mapping[int, Mapping[str, float]],
               chair: ChairScores | None) -> list[dict]:
    out = []
    for row in rows:
        entry = {"image_id": row.image_id, "caption": row.caption, **per_image_scores.get(row.image_id, {})}
        if chair is not None:
            image = chair.result.per_image[row.image_id]
            entry.update({"CHAIRs": image.chair_s, "CHAIRi": image.chair_i,
                          "mentioned": mention_dicts(image.mentioned),
                          "hallucinated": mention_dicts(image.hallucinated),
                          "ground_truth": sorted(image.ground_truth)})
        if chair is not None and chair.binding is not None:
            pairs = chair.binding.per_image[row.image_id]
            entry.update({"binding_pairs": [list(p) for p in pairs.pairs],
                          "binding_errors": [list(p) for p in pairs.errors]})
        out.append(entry)
    return out


def _images_folder(annotations: Path, images: str | Path | None) -> Path | None:
    """The image folder: ``images`` or, in the official layout, ``root/<split>`` beside ``root/annotations``."""
    if images is not None:
        return Path(images)
    match = re.fullmatch(r"captions_(.+)\.json", annotations.name)
    guess = annotations.resolve().parent.parent / match.group(1) if match else None
    return guess if guess is not None and guess.is_dir() else None


def evaluate(results: str | Path, annotations: str | Path, instances: str | Path | None = None,
             synonyms: str | Path | None = None, *, output: str | Path | None = None, backend: str = "auto",
             chair_mode: str = "reference", gallery: str | Path | None = None, report: str | Path | None = None,
             images: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Scores a COCO results file and writes the requested outputs.

    Args:
        results: COCO results file (a JSON list of ``{"image_id", "caption"}``, one per image).
        annotations: Official ``captions_*.json`` with the references; only the result images are scored.
        instances: Official ``instances_*.json``; it enables CHAIR.
        synonyms: CHAIR synonym table: a file or a packaged table's name (``coco``, ``shapes``); ``None``
            picks the packaged table that names every category of ``instances`` (COCO's reference table for
            COCO-style files).
        output: METRICS.json path (not written when ``None``).
        backend: Caption-metric backend: ``auto``, ``pycocoevalcap`` or ``python``.
        chair_mode: ``reference`` or ``fixed``.
        gallery: Folder for the HTML gallery.
        report: Folder for the hallucination report (needs CHAIR).
        images: Image folder for the gallery (default: the split folder of the official layout).
        log: Receives the printed table and notes.

    Returns:
        The METRICS.json content.
    """
    if chair_mode not in CHAIR_MODES:
        raise ValueError(f"unknown CHAIR mode {chair_mode!r}; choose one of {', '.join(CHAIR_MODES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown metric backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    rows = read_results(results)
    ann = read_annotations(annotations)
    check_known_ids(rows, ann, results)
    instance_data = read_instances(instances) if instances is not None else None
    if synonyms is not None and not synonyms_path(synonyms).is_file():
        raise FileNotFoundError(f"synonym table not found: {synonyms}")
    if synonyms is None and instance_data is not None:
        synonyms = table_for(c["name"] for c in instance_data["categories"])
    image_dir = _images_folder(ann.path, images) if gallery is not None else None
    if gallery is not None and image_dir is None:
        raise InputError(f"--gallery needs the image folder of {ann.path}: pass --images DIR")
    if report is not None and (instance_data is None or synonyms is None):
        raise InputError("--report needs CHAIR: pass --instances (and --synonyms where no packaged table names "
                         "its categories)")
    captions = {row.image_id: row.caption for row in rows}
    references = {i: list(ann.references[i]) for i in captions}
    chair = None if instance_data is None or synonyms is None else chair_scores(
        captions, references, instance_data, synonyms, chair_mode)
    scores = score_captions(references, captions, backend)
    metrics = _metrics(rows, ann, scores, chair, chair_mode, {"results": results, "annotations": annotations,
                                                              "instances": instances, "synonyms": synonyms})
    files = _render_outputs(metrics, rows, ann, references, chair, output, gallery, report, image_dir)
    write_outputs(files)
    log(format_table(metrics))
    for path in files:
        log(f"wrote {path}")
    return metrics


def _metrics(rows: Sequence[ResultRow], ann: Any, scores: CaptionScores, chair: ChairScores | None,
             chair_mode: str, sources: Mapping[str, str | Path | None]) -> dict[str, Any]:
    """METRICS.json content: corpus values, what produced them, notes, sources and the per-image rows."""
    notes = list(scores.notes)
    if chair is None and sources["instances"] is None:
        notes.append("CHAIR skipped: it needs --instances")
    elif chair is None:
        notes.append("CHAIR skipped: no packaged synonym table names every category of --instances; "
                     "pass --synonyms")
    metrics: dict[str, Any] = {name: scores.corpus.get(name) for name in CAPTION_KEYS}
    if "SPICE" in scores.corpus:
        metrics["SPICE"] = scores.corpus["SPICE"]
    metrics.update({"CHAIRs": chair.result.chair_s if chair else None,
                    "CHAIRi": chair.result.chair_i if chair else None,
                    "binding_errors": chair.binding.rate if chair and chair.binding else None,
                    "backend": scores.backend, "chair_mode": chair_mode if chair else None,
                    "num_images": len(rows), "num_annotated_images": len(ann.references), "notes": notes,
                    **{name: None if path is None else str(path) for name, path in sources.items()},
                    "per_image": _per_image(rows, scores.per_image, chair)})
    return metrics


def _render_outputs(metrics: dict, rows: Sequence[ResultRow], ann: Any, references: Mapping[int, list[str]],
                    chair: ChairScores | None, output: str | Path | None, gallery: str | Path | None,
                    report: str | Path | None, image_dir: Path | None) -> dict[Path, str | bytes]:
    """Every output file's content, computed before anything is written."""
    files: dict[Path, str | bytes] = {}
    if output is not None:
        files[Path(output)] = json.dumps(metrics, indent=1, ensure_ascii=False) + "\n"
    if gallery is not None:
        maps = {row.image_id: row.attention for row in rows}
        items = [GalleryItem.from_metrics(entry, image_dir / ann.file_names[entry["image_id"]],
                                          references[entry["image_id"]],
                                          chair.chair.tokens(entry["caption"]) if chair else None,
                                          maps[entry["image_id"]])
                 for entry in metrics["per_image"]]
        files.update(render_gallery(items, Path(gallery), title=f"{Path(metrics['results']).name}",
                                    summary=format_table(metrics)))
    if report is not None and chair is not None:
        lengths = {row.image_id: count_words(chair.chair.tokens(row.caption)) for row in rows}
        files.update(render_report(metrics, lengths, Path(report)))
    return files


def count_words(tokens: Sequence[str]) -> int:
    """Word tokens (those with a letter or digit), i.e. the caption length without punctuation."""
    return sum(any(ch.isalnum() for ch in token) for token in tokens)


def write_outputs(files: Mapping[Path, str | bytes]) -> None:
    """Writes each file atomically (text as UTF-8)."""
    for path, content in files.items():
        if isinstance(content, bytes):
            with atomic_path(path) as tmp:
                tmp.write_bytes(content)
        else:
            write_text_atomic(path, content)


def format_table(metrics: Mapping[str, Any]) -> str:
    """The metrics as a two-column table plus the backend, CHAIR mode and notes."""
    names = [n for n in (*METRIC_NAMES, "CHAIRs", "CHAIRi", "binding_errors")
             if n in metrics and (n != "binding_errors" or metrics[n] is not None)]
    lines = [f"{'metric':8s}  value"]
    lines += [f"{n:8s}  {'-' if metrics[n] is None else format(metrics[n], '.4f')}" for n in names]
    lines.append(f"{metrics['num_images']} images; caption metrics by {metrics['backend']}"
                 + (f"; CHAIR mode {metrics['chair_mode']}" if metrics.get("chair_mode") else ""))
    lines += [f"note: {note}" for note in metrics.get("notes", [])]
    return "\n".join(lines)
