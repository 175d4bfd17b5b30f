"""Process-wide CPU settings for tensor work: keep freed memory instead of faulting it in again.

Every forward pass allocates activations of tens of MB and frees them at once. glibc's ``malloc`` serves
blocks above its mmap threshold (dynamic, at most 32 MB by default) with fresh ``mmap`` pages and trims the
heap back when its top grows free, so the next pass touches brand-new pages: the kernel faults and zeroes
each 4 KiB page again. On the project's 2-core VM that is 5-40% of an inference pass (more for models that
allocate N x N attention scores) -- ``python benchmarks/model.py --groups small`` measures it, BENCHMARKS.md
has the numbers. Raising both thresholds keeps the memory in the process, where the next pass reuses it.

This is what PyTorch's own CPU tuning guide gets from preloading jemalloc or tcmalloc, without a preload.
The cost: the process's resident memory stays at its peak instead of shrinking between passes. It does not
grow without bound: the first passes may leave a few freed blocks that torch's aligned allocations cannot
reuse (glibc 2.36's ``posix_memalign`` pads each request), then the heap settles. The base model on 8x224
clips, 21 passes: peak RSS 834 MiB from the first pass on and no page faults after it, against 807-821 MiB
and about 40,000 faults per pass with the default allocator (``python benchmarks/fast_paths.py``).

The ``fast-timesformer`` command applies it at start-up; call :func:`tune_allocator` yourself in scripts.
Set ``FAST_TIMESFORMER_ALLOCATOR=default`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks below this come from the reusable heap; freed heap memory above it is kept (1 GiB).
THRESHOLD_BYTES = 1 << 30

_applied: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`THRESHOLD_BYTES` for this process.

    Returns True if the allocator was tuned (Linux with glibc, not opted out), False otherwise. Idempotent;
    it affects allocations made after the call, and forked workers (DataLoader) inherit it.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("FAST_TIMESFORMER_ALLOCATOR", "").lower() == "default" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    )
    return _applied


__all__ = ["THRESHOLD_BYTES", "tune_allocator"]
