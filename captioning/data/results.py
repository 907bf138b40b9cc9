"""Reading and checking the inputs of ``captioning evaluate`` / ``captioning gallery``.

Every problem is a :class:`InputError` (a ``ValueError``) whose message names the file, the entry and the
problem, raised before any output is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioning.data.coco import read_caption_file
from captioning.data.formats import FormatError, load_json, read_json_lines


class InputError(FormatError):
    """A malformed or inconsistent input file."""


@dataclass(frozen=True)
class ResultRow:
    """One generated caption: its image, text and, from batch-captioning output, file name and score."""

    image_id: int
    caption: str
    file_name: str | None = None
    score: float | None = None
    attention: list[list[float]] | None = None  # per word, the region weights of an attention decoder


def _check_row(path: Path, where: str, row: Any, extra: bool) -> ResultRow:
    if not isinstance(row, dict):
        raise InputError(f"{path}: {where} must be an object with 'image_id' and 'caption', got "
                         f"{type(row).__name__}")
    for key in ("image_id", "caption"):
        if key not in row:
            raise InputError(f"{path}: {where} has no {key!r} key")
    image_id, caption = row["image_id"], row["caption"]
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise InputError(f"{path}: {where} 'image_id' must be an integer, got {image_id!r}")
    if not isinstance(caption, str):
        raise InputError(f"{path}: {where} (image_id {image_id}) 'caption' must be a string, got "
                         f"{type(caption).__name__}")
    file_name, score = (row.get("file_name"), row.get("score")) if extra else (None, None)
    if file_name is not None and not isinstance(file_name, str):
        raise InputError(f"{path}: {where} (image_id {image_id}) 'file_name' must be a string")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise InputError(f"{path}: {where} (image_id {image_id}) 'score' must be a number")
    attention = row.get("attention") if extra or "attention" in row else None
    if attention is not None and not (isinstance(attention, list) and all(
            isinstance(w, list) and all(isinstance(a, (int, float)) for a in w) for w in attention)):
        raise InputError(f"{path}: {where} (image_id {image_id}) 'attention' must be a list of lists of numbers "
                         "(each word's region weights)")
    return ResultRow(image_id, caption, file_name, None if score is None else float(score), attention)


def _unique(path: Path, rows: list[ResultRow]) -> list[ResultRow]:
    seen: dict[int, int] = {}
    for index, row in enumerate(rows):
        if row.image_id in seen:
            raise InputError(f"{path}: image_id {row.image_id} appears more than once (entries {seen[row.image_id]} "
                             f"and {index}); the COCO results format has one caption per image")
        seen[row.image_id] = index
    if not rows:
        raise InputError(f"{path}: no captions (the list is empty)")
    return rows


def read_results(path: str | Path) -> list[ResultRow]:
    """Reads a COCO results file: a JSON list of ``{"image_id": int, "caption": str}``, one per image.

    Extra keys (``score`` …) are allowed and ignored, except ``attention`` (each word's region weights from an
    attention decoder), which the gallery draws.
    """
    path = Path(path)
    data = load_json(path, "results", InputError)
    if not isinstance(data, list):
        raise InputError(f"{path}: a COCO results file must be a JSON list of {{'image_id', 'caption'}} objects, "
                         f"got a JSON {type(data).__name__}")
    return _unique(path, [_check_row(path, f"entry {i}", row, extra=False) for i, row in enumerate(data)])


def read_caption_rows(path: str | Path) -> list[ResultRow]:
    """Reads captions for a gallery: a COCO results list, or JSON Lines of ``{"image_id", "caption",
    "file_name", "score"}`` (batch-captioning output; ``file_name`` and ``score`` optional; a line whose
    ``image_id`` is null, from a captioned folder, gets its line number as id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    with path.open("rb") as f:
        is_list = f.read(4096).lstrip().startswith(b"[")
    if is_list:
        data = load_json(path, "captions", InputError)
        return _unique(path, [_check_row(path, f"entry {i}", row, extra=True) for i, row in enumerate(data)])
    rows = []
    for number, row in read_json_lines(path, error=InputError):
        if isinstance(row, dict) and row.get("image_id", 0) is None and isinstance(row.get("file_name"), str):
            row = {**row, "image_id": number}  # a folder or list captioned: no COCO id; the line number stands in
        rows.append(_check_row(path, f"line {number}", row, extra=True))
    return _unique(path, rows)


@dataclass(frozen=True)
class Annotations:
    """Reference captions and file names of a COCO ``captions_*.json`` file."""

    path: Path
    references: dict[int, tuple[str, ...]]
    file_names: dict[int, str]


def read_annotations(path: str | Path) -> Annotations:
    """Reads an official COCO captions file (checked field by field)."""
    path = Path(path)
    images = read_caption_file(path, Path("."))
    return Annotations(path, {img.image_id: img.captions for img in images},
                       {img.image_id: str(img.path) for img in images})


def check_known_ids(results: list[ResultRow], annotations: Annotations, results_path: str | Path) -> None:
    """Every result must name an image that has reference captions."""
    unknown = [row.image_id for row in results if row.image_id not in annotations.references]
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" …" if len(unknown) > 5 else "")
        raise InputError(f"{results_path}: {len(unknown)} image_id(s) have no reference captions in "
                         f"{annotations.path}: {shown}")
