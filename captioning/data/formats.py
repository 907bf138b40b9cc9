"""Reading the project's JSON and JSON Lines files with errors that name the file, the entry and the field:
the one loader, field check and line reader behind the COCO, VQA and results readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class FormatError(ValueError):
    """A malformed input file; the message names the file, the entry and the problem."""


def load_json(path: str | Path, what: str, error: type[ValueError] = FormatError) -> Any:
    """The JSON content of ``path``.

    Raises:
        FileNotFoundError: ``"<what> file not found: <path>"``.
        error: ``"<path>: not valid JSON (…)"`` (also for text that is not UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err})") from err


def require_field(record: Any, field: str, kind: type | tuple[type, ...], where: str, path: str | Path,
                  error: type[ValueError] = FormatError) -> Any:
    """``record[field]``, checked to exist and to be of ``kind`` (``bool`` is not an ``int`` here).

    Raises:
        error: e.g. ``"<path>: images[3] has no field 'file_name'"`` or ``"… field 'id' must be int, got str ('7')"``.
    """
    if not isinstance(record, dict):
        raise error(f"{path}: {where} must be a JSON object, got {type(record).__name__}")
    if field not in record:
        raise error(f"{path}: {where} has no field {field!r}")
    value = record[field]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        name = " or ".join(k.__name__ for k in _kinds(kind))
        raise error(f"{path}: {where} field {field!r} must be {name}, got {type(value).__name__} ({value!r:.60})")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def read_json_lines(path: str | Path, partial_last_line: bool = False,
                    error: type[ValueError] = FormatError) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON Lines file.

    Args:
        path: The file.
        partial_last_line: Ignore a last line without a newline (cut off by a killed writer).
        error: The exception raised for a line that is not JSON.

    Raises:
        error: ``"<path>: line N is not valid JSON (…)"``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err})") from err
    lines = text.split("\n")
    if partial_last_line and not text.endswith("\n"):
        lines = lines[:-1]  # the last line was being written when the run stopped
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise error(f"{path}: line {number} is not valid JSON ({err})") from err
    return rows
