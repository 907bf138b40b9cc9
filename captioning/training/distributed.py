"""Gathering evaluation and prediction rows from every rank (a no-op in a single process)."""

from __future__ import annotations

import torch


def gather_objects(items: list, world_size: int) -> list:
    """All ranks' items, concatenated in rank order (a no-op in a single process)."""
    if world_size <= 1 or not torch.distributed.is_initialized():
        return items
    parts: list = [None] * world_size
    torch.distributed.all_gather_object(parts, items)
    return [x for part in parts for x in part]
