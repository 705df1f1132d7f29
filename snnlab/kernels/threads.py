"""The number of CPU threads a run computes on (the experiment's top-level ``threads``), set once at its start.

torch's OpenMP pool and Numba's pool are two pools: threads of one spin while the other's work, and on a small
machine shared with other jobs a parallel step waits for a thread the OS has descheduled. The quickstart on a
loaded 2-core machine was 2-10x slower with both on 2 threads than on 1 (``benchmarks/RESULTS.md``). So the
default is half the cores this process may use (at least 1): 1 on a 2-core machine, which also leaves the
other hyperthread of a core, or the other job, its core. Numba's kernels run on as many threads as torch does
(``snnlab.kernels.numba_common.parallel`` reads ``torch.get_num_threads()`` at each call), so setting torch's
sets both.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """``threads: null``: ``$OMP_NUM_THREADS`` where it is set (torchrun sets 1 per process), else half the
    available cores, at least 1."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, available_cores() // 2)


def set_threads(threads: int | None) -> int:
    """Compute on ``threads`` threads (None: ``default_threads()``), torch's pool and Numba's alike; returns the
    number set."""
    n = default_threads() if threads is None else threads
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
