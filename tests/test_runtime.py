"""Process settings for CPU speed."""

from __future__ import annotations

import sys

from captioning.core.runtime import keep_freed_memory


def test_keep_freed_memory_takes_effect_with_glibc() -> None:
    took = keep_freed_memory()
    uses_glibc = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())
    assert took is uses_glibc
