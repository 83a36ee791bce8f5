"""BLAS calls of the per-object CPU steps on one thread.

numpy's OpenBLAS starts a thread per core and, after each call, keeps those threads spinning for a
while. Between our steps that spinning takes the cores torch's own threads render and encode on:
rendering right after preparing a scan took 1.6x as long (``benchmarks/README.md``,
"Throughput"). Our BLAS calls (plane fits, 3 x 3 transforms of point arrays) gain nothing from
more threads, so the steps that make them run under :func:`one_blas_thread`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (~0.2 ms)


def one_blas_thread() -> AbstractContextManager:
    """Context in which numpy's (and scipy's) BLAS uses one thread; restored on exit."""
    return _controller().limit(limits=1, user_api="blas")


__all__ = ["one_blas_thread"]
