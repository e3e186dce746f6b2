"""Keep freed host memory in the process on CPU runs, instead of handing every large tensor's pages back to the OS.

glibc's malloc serves an allocation above its mmap threshold (128 KiB, raised only as far as the largest block
freed so far) with fresh pages from the kernel and unmaps them when the block is freed, and it returns the top of
the heap to the OS once more than twice that is free. A CPU training step allocates and frees the same few-MB
activations hundreds of times, so every step page-faults on (and the kernel zeroes) memory it had a moment ago.
Raising both thresholds keeps freed blocks in the heap for reuse: the zoo's MobileNet step 944 / 974 -> 914 / 885
ms, the ResNet-20's 982 -> 945 ms (``runs/bench_speed.py --recipe zoo ... --modes cl --batches 64 --threads 1
[--runtime.keep_host_memory false]``, AMD EPYC, one thread; docs/changelog.md).

What it changes: two of the process's malloc settings (M_MMAP_THRESHOLD to 1 GiB, or glibc's 32 MiB cap where
it refuses more; M_TRIM_THRESHOLD to 2 GiB) for the rest of the process (glibc has no way to read them back, so
they are not restored): freed memory below those sizes stays mapped to the process and is reused, so its
resident size stays near its peak after a run. Only on Linux with glibc; elsewhere nothing is done. CUDA memory is
untouched (PyTorch caches it itself). ``runtime.keep_host_memory = false`` leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_applied = False


def keep_freed_host_memory(device: torch.device | str = "cpu") -> bool:
    """Raise glibc's mmap and trim thresholds once per process for a run on ``device`` (nothing for a GPU run:
    PyTorch caches CUDA memory itself); True where they are set (now or before)."""
    global _applied
    if torch.device(device).type != "cpu":
        return False
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = mallopt(M_MMAP_THRESHOLD, 1 << 30) or mallopt(M_MMAP_THRESHOLD, 32 << 20)
    trimmed = mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    _applied = bool(mapped and trimmed)
    return _applied
