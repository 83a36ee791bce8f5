"""Wall time per pipeline stage, for benchmarks (off by default: then free, and never synchronises).

    >>> from align3d_ad import profiling
    >>> profiling.enable(sync_cuda=True)            # doctest: +SKIP
    >>> ...                                         # run test / predict / evaluate_dataset
    >>> profiling.totals()                          # {"read": s, "render": s, "backbone": s, ...}

The stages are those ``benchmarks/throughput.py`` reports: ``read`` and ``prepare`` (run in the
loader's worker processes, whose totals travel back with each item, :mod:`.data.loading`), ``wait``
(the main process waiting for the next batch: the device idle for want of data), ``render``,
``backbone``, ``head``, ``back-project``, ``smooth`` and ``write``. With ``sync_cuda`` each stage
waits for the CUDA queue on entry and exit, so device work is charged to the stage that queued it
(this removes the overlap it measures; leave it off to time the end-to-end throughput).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

_totals: defaultdict[str, float] = defaultdict(float)
_state = {"enabled": False, "sync": False}


def enable(*, sync_cuda: bool = False) -> None:
    """Start accumulating stage times (from zero)."""
    _totals.clear()
    _state.update(enabled=True, sync=bool(sync_cuda) and torch.cuda.is_available())


def disable() -> None:
    _state["enabled"] = False


def enabled() -> bool:
    return _state["enabled"]


def totals() -> dict[str, float]:
    """Seconds per stage since :func:`enable`."""
    return dict(_totals)


def take() -> dict[str, float]:
    """Seconds per stage since the last call, forgotten here (a worker's, to send back)."""
    out = dict(_totals)
    _totals.clear()
    return out


def add(seconds: Mapping[str, float]) -> None:
    """Add stage times measured elsewhere (another process)."""
    if _state["enabled"]:
        for name, value in seconds.items():
            _totals[name] += value


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Charge the wall time of the block to ``name`` (nothing when profiling is off)."""
    if not _state["enabled"]:
        yield
        return
    if _state["sync"]:
        torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        yield
    finally:
        if _state["sync"]:
            torch.cuda.synchronize()
        _totals[name] += time.perf_counter() - start


__all__ = ["add", "disable", "enable", "enabled", "stage", "take", "totals"]
