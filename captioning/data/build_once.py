"""Generated dataset directories built once, atomically, and reused while their parameters match.

The parameters (a JSON-able ``meta`` dict) are the cache key, stored in the directory. A build writes into
a temporary sibling ``.<name>.tmp-<pid>`` that is renamed into place when complete, so a killed run never
leaves a half-written dataset; siblings left by dead processes are removed by the next build, and two
processes racing to build the same dataset both succeed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable


def write_json(path: Path, data: dict) -> None:
    """Compact JSON with sorted keys (generated files are byte-identical across runs)."""
    path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")


def build_once(root: str | Path, meta: dict, meta_name: str, write: Callable[[Path], None], what: str) -> Path:
    """Returns ``root``, first building it with ``write`` unless it already holds a build of ``meta``.

    Args:
        root: The dataset directory; it must be absent, empty, or an earlier build (holding ``meta_name``).
        meta: The build's parameters, written to ``root/meta_name``.
        meta_name: File name of the stored parameters.
        write: Writes the dataset into the (empty, existing) directory it is given.
        what: What the directory holds, for the error message (e.g. ``"a shapes dataset"``).

    Raises:
        FileExistsError: If ``root`` holds something else; it is never replaced.
    """
    root = Path(root)
    if _meta_matches(root, meta_name, meta):
        return root
    _check_replaceable(root, meta_name, what)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        write_json(tmp / meta_name, meta)
        _install(tmp, root, meta_name, meta, what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _meta_matches(root: Path, meta_name: str, meta: dict) -> bool:
    try:
        return json.loads((root / meta_name).read_text()) == meta
    except (OSError, ValueError):
        return False


def _check_replaceable(root: Path, meta_name: str, what: str) -> None:
    if root.exists() and not (root.is_dir() and (not any(root.iterdir()) or (root / meta_name).is_file())):
        raise FileExistsError(f"{root} exists and is not {what}; refusing to replace it")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path) -> None:
    """Deletes temporary siblings left behind by killed runs (their process no longer exists)."""
    for path in root.parent.glob(f".{root.name}.*-*"):
        kind, _, pid = path.name[len(root.name) + 2:].rpartition("-")
        if kind in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _install(tmp: Path, root: Path, meta_name: str, meta: dict, what: str) -> None:
    """Renames the finished ``tmp`` to ``root``, tolerating a racing process that won."""
    if _meta_matches(root, meta_name, meta):
        return
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    try:
        if root.exists():
            _check_replaceable(root, meta_name, what)
            os.rename(root, old)
        os.rename(tmp, root)
    except OSError:
        if not _meta_matches(root, meta_name, meta):
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
