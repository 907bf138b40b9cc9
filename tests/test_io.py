import os
from pathlib import Path

import pytest

from captioning.core.io import atomic_path, write_json_atomic


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "out" / "m.json", {"Bleu_4": 0.5})
    assert path.read_text() == '{\n "Bleu_4": 0.5\n}\n'
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "m.json", [1])
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("[1, 2")  # half-written
        raise RuntimeError("killed")
    assert path.read_text() == "[\n 1\n]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
