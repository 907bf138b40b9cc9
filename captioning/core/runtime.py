"""Process settings that decide CPU inference speed.

glibc's malloc hands large freed blocks straight back to the operating system, and a CNN forward pass frees
and re-allocates tens of megabytes of activations per batch, so every batch pays for fresh pages (page
faults and zeroing). Keeping freed memory in the process for reuse doubles the pretrained encoder's
throughput on this project's 2-core machine (``tf_efficientnet_lite0`` at 224 px, batch 32: 28 → 58
images/s). ``captioning caption``, ``captioning features`` and ``captioning benchmark`` call
:func:`keep_freed_memory` at start.

oneDNN, which runs PyTorch's CPU convolutions, recurrent layers and bf16 matrix products, compiles a kernel for
every new shape and keeps 1,024 of them. A VQA batch holds all the questions of its images, so its question count
changes from batch to batch, and every kernel on the question side has dozens of shapes: more than the cache holds, so
they are compiled again at every step. The training commands call :func:`keep_compiled_kernels` at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import multiprocessing
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest accepted value on 64-bit systems


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Asks glibc's malloc to serve blocks up to 32 MiB from its heap and to keep up to ``limit`` bytes of
    freed memory for reuse instead of returning it to the system; a no-op without glibc.

    Args:
        limit: Bytes of freed memory the process may keep (the memory cost of the setting).

    Returns:
        Whether the settings took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library found, or one without mallopt (e.g. musl)
        return False
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, limit), (_M_TOP_PAD, limit))
    return all(mallopt(option, value) == 1 for option, value in settings)


ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def keep_compiled_kernels(capacity: int = 8192) -> int:
    """Lets oneDNN keep ``capacity`` compiled kernels instead of 1,024, unless the environment already sets
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``; returns the capacity that the environment now asks for.

    oneDNN reads the variable when it compiles its first kernel, so this acts only if called before the process's
    first convolution, recurrent layer or bf16 matrix product. With 1,024 kernels, every shapes VQA training step
    compiled again the kernels of its question count (47 different counts in an epoch, each compilation up to
    6 ms): a step of the default model took 384 ms instead of 268 ms on this project's 2-core machine (steps 150 to
    300, bf16). The cost is memory: with 8,192 the VQA main job's peak resident set is 5.2 GiB instead of 4.1 GiB.

    Args:
        capacity: Kernels to keep (each holds its compiled code and may hold a scratch buffer).
    """
    if capacity < 1:
        raise ValueError(f"keep_compiled_kernels: capacity must be >= 1, got {capacity}")
    return int(os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(capacity)))


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls and convolutions natively on this CPU (AVX512 cores, AVX512-BF16 or
    AMX). On an AVX2-only CPU bf16 autocast falls back to slow reference kernels: a shapes training step took
    ten times as long as in fp32 on this project's AMD EPYC (AVX2) machine."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def fast_precision(accelerator: str | None = "auto") -> str:
    """The fastest Lightning precision that trains correctly on this machine's ``accelerator``: on a CUDA GPU
    ``bf16-mixed`` (``16-mixed`` where the GPU has no bf16), on a CPU ``bf16-mixed`` only where
    :func:`cpu_has_fast_bf16`, else ``32-true``.

    Args:
        accelerator: The trainer's accelerator (``auto``/``None``: CUDA when available, ``gpu``/``cuda``, ``cpu``).
    """
    import torch

    if accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def worker_context(num_workers: int) -> str | None:
    """The start method for ``num_workers`` DataLoader worker processes: ``forkserver`` where the platform has it
    (``None``, the default, without workers or elsewhere).

    Forking a process that runs other threads (DDP's, a previous loader's queue feeders) can copy a lock that one
    of them holds: the child then blocks for ever in CPython's after-fork clean-up, and its loader with it (seen in
    ``tests/test_distributed.py``: a rank's predict loader hung at its worker's start). A fork server is a
    single-threaded process, so its forks cannot inherit a held lock.
    """
    if num_workers > 0 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return None
