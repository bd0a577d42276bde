"""Process-level speed settings for CPU training."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Stop glibc from returning every large freed buffer to the OS.

    Each training step allocates and frees hundreds of MB of activations; by default glibc maps them with
    mmap and unmaps them on free, so every step page-faults them in again (about 15 % of a CPU step at
    192x320). Serving them from the heap and never trimming it removes that cost. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 40))
    except (OSError, AttributeError):
        return False
