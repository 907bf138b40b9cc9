"""Reads the records of an offline W&B run file (``run-*.wandb``), for test_tracking.py.

The file is a LevelDB-style log (``:W&B`` header, 32 KiB blocks of CRC/length/type-framed chunks) of
``wandb_internal_pb2.Record`` protobufs; wandb ships no Python reader for it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER, FULL, LAST = 32768, 7, 1, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, chunk = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if room < HEADER or (length == 0 and kind == 0):  # block padding
            pos += room
            continue
        if pos + HEADER + length > len(data):  # still being written
            return
        chunk += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def history_keys(path: Path) -> set[str]:
    """Every key logged to the run's history."""
    return {item.key or "/".join(item.nested_key) for r in records(path) if r.WhichOneof("record_type") == "history"
            for item in r.history.item}
