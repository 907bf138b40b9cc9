"""The files of ``captioning caption``: per-rank journals while it runs, one atomic output at the end.

While captioning, every process appends its rows to its own journal (``OUT.parts/rank<r>.jsonl``, flushed
per batch). At the end the journals are merged (each image once, in input order) and the output and the
errors file are written atomically, so a killed run never leaves a truncated output; ``--resume`` first
folds the journals of a killed run into the output and then captions only what is missing.

Rows have exactly the fields ``image_id`` (COCO id or ``None``), ``file_name``, ``caption``, ``score``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from captioning.data.formats import read_json_lines
from captioning.data.images import ImageRef, discover_images
from captioning.core.io import atomic_path, write_json_atomic

FORMATS = ("jsonl", "coco")


def make_row(ref: ImageRef, caption: str, score: float, attention: list[list[float]] | None = None) -> dict:
    """One output row; with ``attention``, each word's region weights (``captioning caption --attention``)."""
    row = {"image_id": ref.image_id, "file_name": ref.file_name, "caption": caption, "score": float(score)}
    if ref.key is not None:  # a tar shard's sample
        row["key"] = ref.key
    if attention is not None:
        row["attention"] = [[round(a, 4) for a in word] for word in attention]
    return row


def make_error(ref: ImageRef, reason: str) -> dict:
    """One errors-file row."""
    error = {"image_id": ref.image_id, "file_name": ref.file_name, "path": str(ref.path), "error": reason}
    return error if ref.key is None else {**error, "key": ref.key}


def errors_path(output: Path) -> Path:
    """Default errors file beside the output: ``caps.jsonl`` → ``caps.errors.jsonl``."""
    return output.with_name(output.with_suffix("").name + ".errors.jsonl")


def journal_dir(output: Path) -> Path:
    """Folder of the per-rank journals of a run writing ``output``."""
    return output.with_name(output.name + ".parts")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines output or journal; a final line cut off by a killed writer (no newline) is ignored.

    Raises:
        ValueError: naming the file and line, for a complete line that is not a JSON object with a ``file_name``.
    """
    rows = []
    for number, row in read_json_lines(path, partial_last_line=True, error=ValueError):
        if not isinstance(row, dict) or "file_name" not in row:
            raise ValueError(f"{path}: line {number} is not an object with a 'file_name'")
        rows.append(row)
    return rows


def read_output(path: Path, fmt: str, refs: list[ImageRef]) -> list[dict]:
    """Rows already in an output file (for ``--resume``); a COCO results list is matched to the input's
    images by ``image_id``."""
    if not path.is_file():
        return []
    if fmt == "jsonl":
        return read_jsonl(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); it cannot be resumed") from err
    if not isinstance(results, list):
        raise ValueError(f"{path}: a COCO results file is a JSON list")
    by_id = {ref.image_id: ref for ref in refs}
    rows = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or r.get("image_id") not in by_id or not isinstance(r.get("caption"), str):
            raise ValueError(f"{path}: entry {i} has no 'caption' or an 'image_id' that the input does not list")
        rows.append(make_row(by_id[r["image_id"]], r["caption"], r.get("score", float("nan"))))
    return rows


def write_output(path: Path, rows: list[dict], fmt: str) -> None:
    """Writes the rows atomically as JSON lines or as a COCO results list (``image_id``, ``caption``, ``score``)."""
    if fmt == "coco":
        missing = [r["file_name"] for r in rows if r["image_id"] is None]
        if missing:
            raise ValueError(f"--format coco needs COCO image ids, but {missing[0]!r} has none "
                             f"(caption a COCO annotation file, or use --format jsonl)")
        write_json_atomic(path, [{"image_id": r["image_id"], "caption": r["caption"], "score": r["score"]}
                                 for r in rows])
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


class Journal:
    """Append-only JSON-lines file of one process, flushed after every batch.

    Args:
        path: The journal file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict]) -> None:
        self._file.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_journals(folder: Path, kind: str) -> list[dict]:
    """All rows of the journals of one kind (``captions`` or ``errors``) in a journal folder."""
    return [row for p in sorted(folder.glob(f"rank*.{kind}.jsonl")) for row in read_jsonl(p)]


def merge_rows(refs: list[ImageRef], *sources: list[dict]) -> list[dict]:
    """Each image once (the last source wins), in input order; rows of images no longer in the input
    (an earlier output's) follow in their own order."""
    by_name: dict[str, dict] = {}
    for rows in sources:
        by_name.update((r["file_name"], r) for r in rows)
    ordered = [by_name.pop(ref.file_name) for ref in refs if ref.file_name in by_name]
    return ordered + list(by_name.values())


def check_complete(pending: list[ImageRef], rows: list[dict], errors: list[dict]) -> None:
    """Every pending image was captioned or reported as unreadable (no gaps), and none was both.

    Raises:
        RuntimeError: naming up to three images that are missing.
    """
    done = {r["file_name"] for r in rows} | {e["file_name"] for e in errors}
    missing = [ref.file_name for ref in pending if ref.file_name not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} images were neither captioned nor reported: {missing[:3]}")


def remove_journals(folder: Path) -> None:
    """Deletes a journal folder (after its rows reached the output)."""
    shutil.rmtree(folder, ignore_errors=True)


class CaptionJob:
    """What one ``captioning caption`` run reads and writes; :meth:`plan` and :meth:`finish` run on rank 0.

    Args:
        source: Folder, list file or COCO annotation file (see :func:`discover_images`).
        output: Output file.
        fmt: ``jsonl`` or ``coco``.
        errors: Errors file (default beside the output).
        resume: Keep the output's (and a killed run's journal's) captions and caption only the rest.
        image_dir: Image folder of a COCO annotation file.
    """

    def __init__(self, source: str | Path, output: str | Path, fmt: str = "jsonl", errors: str | Path | None = None,
                 resume: bool = False, image_dir: str | Path | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {FORMATS}")
        self.source, self.image_dir, self.output, self.fmt = source, image_dir, Path(output), fmt
        self.errors = Path(errors) if errors else errors_path(self.output)
        self.resume, self.journals = resume, journal_dir(self.output)

    def plan(self) -> dict:
        """Finds the images, folds a killed run's journals into the output (``resume``) and returns
        ``{"refs", "pending", "previous"}``: all images, those still to caption, and the rows kept."""
        refs = discover_images(self.source, self.image_dir)
        if self.fmt == "coco" and any(ref.image_id is None for ref in refs):
            raise ValueError(f"--format coco needs COCO image ids; {self.source} is not a COCO annotation file "
                             f"(use --format jsonl)")
        previous: list[dict] = []
        if self.resume:
            journal = read_journals(self.journals, "captions") if self.journals.is_dir() else []
            previous = merge_rows(refs, read_output(self.output, self.fmt, refs), journal)
            if journal:
                write_output(self.output, previous, self.fmt)
        remove_journals(self.journals)
        done = {r["file_name"] for r in previous}
        return {"refs": refs, "pending": [ref for ref in refs if ref.file_name not in done], "previous": previous}

    def finish(self, plan: dict) -> dict:
        """Merges every rank's journal with the kept rows, checks for gaps, writes the output and errors
        file atomically and removes the journals. Returns counts for the summary."""
        new = merge_rows(plan["pending"], read_journals(self.journals, "captions"))
        errors = list({e["file_name"]: e for e in read_journals(self.journals, "errors")}.values())
        captioned = {r["file_name"] for r in new}
        errors = [e for e in errors if e["file_name"] not in captioned]
        check_complete(plan["pending"], new, errors)
        rows = merge_rows(plan["refs"], plan["previous"], new)
        write_output(self.output, rows, self.fmt)
        if errors:
            with atomic_path(self.errors) as tmp:
                tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors), encoding="utf-8")
        else:
            self.errors.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
        remove_journals(self.journals)
        return {"captioned": len(new), "kept": len(plan["previous"]), "errors": len(errors), "total": len(rows)}
