"""Shared benchmark helpers: peak-memory measurement and the provider/baseline convention.

Every benchmark sets ``benchmark.group`` to one (op, shape) and ``benchmark.extra_info`` to
``{"provider": ..., "baseline": bool, ...}``; ``benchmarks/report.py`` turns a
``--benchmark-json`` file into the tables of ``benchmarks/RESULTS.md`` (speed-up against the
baseline of each group) and one PNG per group.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
from collections.abc import Callable

import torch

# Interpreter only without CUDA: on a GPU the benchmarks must time the compiled kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on the 2 shared cores, oversubscribed by other jobs, OpenMP
    barriers cost more than the work (a decode step: 22 ms on 1 thread, 400 ms on 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak resident memory that ``fn()`` adds, in MiB (Linux: VmHWM after resetting it).

    CPU tensors have no allocator statistics, so this reads the process's high-water mark; freed
    heap is returned to the OS first (malloc_trim) so earlier work does not hide the peak.
    """
    if not sys.platform.startswith("linux"):
        return float("nan")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (times the compiled Triton kernels)"
)


def cuda_step(step: Callable[[], object]) -> Callable[[], object]:
    """``step`` followed by a device synchronisation, so the benchmark's host clock times the GPU work."""

    def synced():
        out = step()
        torch.cuda.synchronize()
        return out

    return synced
