"""runtime.keep_host_memory: the process keeps freed host memory for reuse (datafree/host_memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")  # fmt: skip

# twenty 8 MB tensors written and all freed: how much heap the process still holds afterwards (glibc's
# mallinfo2). Without the setting the tensors are mmapped and unmapped, or the freed top of the heap is handed
# back to the OS (more than twice the mmap threshold free, at most 64 MB), and the next step faults it in again.
_PROBE = """
import ctypes, sys, torch
sys.path.insert(0, {root!r})
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                                     "fordblks keepcost").split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def heap_after_free():
    start = libc.mallinfo2().arena
    held = [torch.ones(2 << 20) for _ in range(20)]
    del held
    return (libc.mallinfo2().arena - start) >> 20
before = heap_after_free()
from datafree.host_memory import keep_freed_host_memory
applied = keep_freed_host_memory()
print(applied, before, heap_after_free())
"""


@pytest.mark.e2e
@glibc_only
def test_freed_memory_stays_in_the_heap_for_reuse():
    """In a fresh process (the setting cannot be undone): the heap held after an alloc/free round, before and after."""
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT))], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    applied, before_mb, after_mb = out[0] == "True", int(out[1]), int(out[2])
    assert applied
    assert before_mb < 80, before_mb  # handed back: at most the trim threshold's 64 MB kept
    assert after_mb >= 150, after_mb  # (nearly) all twenty tensors' memory kept for the next round


@pytest.mark.slow
@glibc_only
@pytest.mark.parametrize("keep", [True, False])
def test_a_cpu_run_says_whether_it_kept_host_memory(tmp_path, keep):
    from conftest import save_random_teacher, tiny_config
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, train={"steps": 2, "keep_host_memory": keep})
    save_random_teacher(config)
    assert distill_from_config(config)["host_memory_kept"] is keep  # false: the allocator is not asked at all


def test_a_gpu_run_leaves_the_host_allocator_alone(monkeypatch):
    """PyTorch caches CUDA memory itself: for a CUDA device the setting is neither applied nor reported."""
    from datafree import host_memory

    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *a: (_ for _ in ()).throw(AssertionError("libc loaded")))
    assert host_memory.keep_freed_host_memory("cuda:0") is False
