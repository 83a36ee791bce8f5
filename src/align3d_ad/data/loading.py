"""Reading and preparing samples in worker processes while the device scores the previous batch.

:func:`prefetch_batches` runs ``load(i)`` for the items of each batch in ``workers`` worker
processes of a :class:`torch.utils.data.DataLoader` (``workers=0``: in this process, one batch
after the other) and yields the batches in order. ``load`` reads a file and prepares the sample
(background removal, resampling): the CPU work of a batch then overlaps with the rendering,
backbone and scoring of the one before, instead of running between device steps.

Two things the plain DataLoader gets wrong for us are handled here:

* Errors. A worker's exception reaches the main process as a new exception built from its
  message plus a traceback (and our errors, built from a path and a problem, do not even rebuild).
  ``load``'s :class:`~align3d_ad.errors.Align3DError` and ``OSError`` are caught in the worker and
  returned as :class:`Failed` items instead, so the caller raises the very exception (or records
  it, as ``predict --keep-going`` does) with its one-line message.
* Log records. A worker's warnings (a suspicious file, a grid mismatch) are captured and re-emitted
  by the main process's loggers with the item, so they reach the terminal and ``run.log`` exactly
  once, whatever the multiprocessing start method; grouped reader warnings travel the same way
  (:meth:`~align3d_ad.data.datasets.base.DatasetReader.take_grouped`).

Worker processes run single-threaded torch and BLAS; every load runs its BLAS calls on one thread
(:func:`~align3d_ad._threads.one_blas_thread`). The main process keeps its threads: workers are busy
only while they read (they wait once ``PREFETCH_FACTOR`` batches are ready), and capping the main
process to the cores they leave halved the backbone's speed on 2 cores (``benchmarks/README.md``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset

from .. import distributed, profiling
from .._threads import one_blas_thread
from ..errors import Align3DError, WorkerDiedError

T = TypeVar("T")
#: Most worker processes the default picks, by the device that scores. A GPU scores faster than
#: workers prepare: at ~0.17 s of reading and preparing per MVTec-sized scan on one core
#: (``benchmarks/README.md``, "Reading and preparing"), 100 objects/s need about 17 workers.
#: The CPU's backbone is the bottleneck there: two workers keep far ahead of it; more would only
#: hold memory.
MAX_DEFAULT_WORKERS = {"cuda": 16, "cpu": 2}
#: Batches each worker keeps ready ahead of the one being scored.
PREFETCH_FACTOR = 2


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_workers(device: torch.device | str = "cpu") -> int:
    """Worker processes by default when ``device`` scores: the cores beyond two, at most
    :data:`MAX_DEFAULT_WORKERS` (16 for CUDA, 2 for the CPU; none on 1-2 cores).

    The main process keeps the other cores. On two cores a worker takes one of the two the main
    process computes on, which costs it more than the overlap gains (``benchmarks/README.md``,
    "Throughput": 0.89x the objects/s with the tiny model), so there the default is none. Under
    torchrun the processes on one machine share its cores: each counts its share
    (cores / ``LOCAL_WORLD_SIZE``), so that 4 GPU ranks on 16 cores start 2 workers each.
    """
    cores = _cores() // max(1, distributed.local_world_size())
    most = MAX_DEFAULT_WORKERS["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return max(0, min(most, cores - 2))


@dataclass
class Failed:
    """An item whose ``load`` raised: the exception, raised or recorded by the caller."""

    error: BaseException


@dataclass
class Loaded(Generic[T]):
    """One item of a batch: its index, ``load``'s result (or :class:`Failed`), its log records."""

    index: int
    value: T | Failed
    records: list[logging.LogRecord] = field(default_factory=list)
    grouped: dict[str, list] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  #: profiling totals of the worker


class _Capture(logging.Handler):
    """Keeps the records logged in a worker process, formatted, until the item is returned."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # picklable whatever the args were
        record.exc_info = record.exc_text = None
        self.records.append(record)


_CAPTURE: _Capture | None = None


def _init_worker(_: int) -> None:
    """Single-threaded torch and BLAS; log records kept for the main process, not printed here.

    BLAS too: an OpenBLAS pool of one thread per core spins after each call, on the cores the main
    process computes on; with it, one worker beside a one-thread main process gained 1.05x, without
    it 1.29x (``benchmarks/README.md``, "Throughput").
    """
    global _CAPTURE
    torch.set_num_threads(1)
    threadpool_limits(1)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    _CAPTURE = _Capture()
    root.addHandler(_CAPTURE)
    root.setLevel(logging.DEBUG)


class _Items(Dataset):
    """``load`` as a map-style dataset whose items never raise (see the module docstring)."""

    def __init__(self, load: Callable[[int], Any], grouped: Callable[[], dict] | None) -> None:
        self.load = load
        self.grouped = grouped

    def __getitem__(self, index: int) -> Loaded:
        try:
            with one_blas_thread():
                value = self.load(index)
        except (Align3DError, OSError) as err:
            value = Failed(err)
        item = Loaded(index, value)
        if _CAPTURE is not None:  # in a worker process
            item.records, _CAPTURE.records = _CAPTURE.records, []
            item.grouped = self.grouped() if self.grouped is not None else {}
            item.stages = profiling.take()
        return item


def _emit(item: Loaded) -> None:
    for record in item.records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def prefetch_batches(
    load: Callable[[int], T],
    batches: Sequence[Sequence[int]],
    *,
    workers: int = 0,
    grouped: tuple[Callable[[], dict], Callable[[dict], None]] | None = None,
) -> Iterator[list[Loaded[T]]]:
    """Yield, in order, the loaded items of each batch (index lists), read ``workers`` at a time.

    Args:
        load: Reads and prepares item ``i``. Raised Align3DError / OSError become :class:`Failed`.
        batches: The items of every batch, in the order they are wanted.
        workers: Worker processes; 0 = load in this process, just before each batch is used.
        grouped: ``(take, add)`` of a reader's grouped warnings: ``take()`` runs in the worker
            after each item and returns what it recorded, ``add(...)`` merges it in this process.

    Yields:
        One list of :class:`Loaded` per batch, in the batch's order. The items' log records have
        been re-emitted here.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    batches = [list(b) for b in batches if len(b)]
    if not batches:
        return
    if workers == 0:
        for batch in batches:
            with profiling.stage("wait"):  # all of the loading waits here
                items = [_Items(load, None)[i] for i in batch]
            yield items
        return
    loader = DataLoader(
        _Items(load, grouped[0] if grouped else None),
        batch_sampler=batches,
        num_workers=min(workers, len(batches)),
        collate_fn=list,
        worker_init_fn=_init_worker,
        prefetch_factor=PREFETCH_FACTOR,
    )
    batches_ = iter(loader)
    while True:
        with profiling.stage("wait"):  # the device idles here for want of data
            try:
                batch = next(batches_, None)
            except RuntimeError as err:
                died = worker_died(err, workers=workers)
                if died is None:
                    raise
                raise died from None
        if batch is None:
            return
        for item in batch:
            _emit(item)
            profiling.add(item.stages)
            if grouped and item.grouped:
                grouped[1](item.grouped)
        yield batch


def worker_died(err: BaseException, *, workers: int | None = None) -> WorkerDiedError | None:
    """The one-line error for torch's "DataLoader worker ... exited / is killed" error, else None.

    Torch raises it where the main process waits for a batch, or from its SIGCHLD handler at any
    point of the main process; the command line turns the latter into the same one-line error.
    """
    text = str(err)
    if not isinstance(err, RuntimeError) or not text.startswith("DataLoader worker"):
        return None
    now = "" if workers is None else f" (now {workers})"
    return WorkerDiedError(
        f"a loader worker process died ({text.splitlines()[0].rstrip('. ')}), most likely killed "
        f"for memory; rerun with fewer --workers{now} or a smaller --batch-size"
    )


def unwrap(item: Loaded[T]) -> T:
    """The item's value, or its load error raised again."""
    if isinstance(item.value, Failed):
        raise item.value.error
    return item.value


__all__ = ["Failed", "Loaded", "default_workers", "prefetch_batches", "unwrap", "worker_died"]
