"""Data-parallel runs under ``torchrun``: one process per GPU (or per machine), torch.distributed.

``train``, ``test``, ``predict`` and ``reproduce`` shard their inputs by rank, share the feature
cache, and gather results on rank 0, which alone writes outputs. In a plain (single-process) run
nothing here touches torch.distributed and every helper is the identity, so the code paths are
the same. Backend: NCCL when the processes run on CUDA, gloo on CPU; Python objects (scores,
rows) always travel over a gloo group, so they never occupy GPU memory.

Inputs are sharded in whole batches (:func:`my_batches`), so every batch a rank scores is exactly a
batch of the single-process run: test and predict give bit-identical numbers. Training splits
each optimiser step's batch across ranks and sums the gradients (:func:`all_reduce_gradients`);
every loss is a mean of per-sample terms, so this is the single-process step up to the order of
floating-point additions.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a collective waits for the slowest rank (extraction on one rank can take a while).
TIMEOUT = datetime.timedelta(hours=2)

_objects_group: Any = None


def launched() -> bool:
    """Whether this process was started by torchrun (or similar) with a world of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; the GPU it uses)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() or launched() else 0


def local_world_size() -> int:
    """How many processes of the run share this machine (torchrun's ``LOCAL_WORLD_SIZE``)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if active() or launched() else 1


def is_main() -> bool:
    """Rank 0: the process that writes outputs and prints results."""
    return rank() == 0


def _uses_cuda(device: str | None) -> bool:
    device = "auto" if device is None else str(device)
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def rank_gpu(device: str | None = "cuda") -> int:
    """The GPU index of this torchrun process: its ``LOCAL_RANK``.

    ``cuda:N`` is refused with one line: it would put every rank on GPU N (NCCL stops at the first
    collective, ``test``/``predict`` would share one GPU). Choose GPUs with CUDA_VISIBLE_DEVICES.
    """
    if str(device).startswith("cuda:"):
        raise ConfigError(
            f"--device {device} under torchrun would put every rank on one GPU; pass --device cuda "
            "(each rank uses the GPU of its LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES)"
        )
    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            f"LOCAL_RANK {index} but only {count} GPU(s) visible: start at most {count} processes "
            "per machine (torchrun --nproc-per-node)"
        )
    return index


def setup(device: str | None = "auto") -> bool:
    """Join the process group that torchrun's environment describes; False when not launched so.

    CUDA processes (``--device auto`` with a GPU, or ``cuda``) use NCCL and the GPU of their
    ``LOCAL_RANK`` (``cuda:N`` is refused, see :func:`rank_gpu`); CPU processes use gloo.
    """
    global _objects_group
    if not launched() or dist.is_initialized():
        return active()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start "
            "data-parallel runs with torchrun (see docs/distributed.md)"
        )
    cuda = _uses_cuda(device)
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
        torch.cuda.set_device(rank_gpu(device))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    _objects_group = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend != "gloo" else None
    logger.debug("rank %d of %d joined (%s)", rank(), world_size(), backend)
    return True


def teardown() -> None:
    """Leave the process group (a no-op in single-process runs)."""
    global _objects_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _objects_group = None


def require_single(what: str) -> None:
    """Raise a clear error when ``what`` is started data-parallel but does not support it."""
    if launched():
        raise ConfigError(
            f"{what} runs in one process; start it without torchrun (data-parallel runs: "
            "train, test, predict, reproduce)"
        )


def my_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The (start, stop) batches of ``range(n)`` this rank handles: batch k goes to rank k % world."""
    starts = range(0, n, batch_size)
    return [(s, min(s + batch_size, n)) for k, s in enumerate(starts) if k % world_size() == rank()]


def batch_rounds(n: int, batch_size: int) -> int:
    """How many batch rounds every rank runs (ranks short of a batch in the last round get none)."""
    return -(-n // (batch_size * world_size())) if n else 0


def split_batch(indices: Sequence[int] | Any) -> Any:
    """This rank's part of one optimiser step's batch (positions rank, rank + world, ...)."""
    return indices[rank() :: world_size()]


def barrier() -> None:
    if active():
        dist.barrier(group=_objects_group)


def gather(obj: T) -> list[T] | None:
    """Every rank's ``obj`` (in rank order) on rank 0; None on the other ranks."""
    if not active():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=_objects_group)
    return out


def gather_in_order(entries: list[tuple[int, Any]]) -> list[tuple[int, Any]] | None:
    """Every rank's ``(index, ...)`` entries merged in index order on rank 0; None elsewhere."""
    parts = gather(entries)
    if parts is None:
        return None
    return sorted((e for part in parts for e in part), key=lambda e: e[0])


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_objects_group)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, group=_objects_group)
    return box[0]  # type: ignore[return-value]


def broadcast_parameters(params: Iterable[torch.Tensor]) -> None:
    """Copy rank 0's values of ``params`` into every rank's (in place)."""
    if not active():
        return
    for p in params:
        with torch.no_grad():
            dist.broadcast(p.data, src=0)


def all_reduce_gradients(params: Sequence[torch.nn.Parameter], values: torch.Tensor) -> torch.Tensor:
    """Sum the gradients of ``params`` and the scalars ``values`` over ranks, in one collective.

    A parameter without a gradient on some rank (e.g. a rank with no samples in the last step)
    counts as zero there. Returns the summed ``values`` (unchanged in single-process runs).
    """
    if not active():
        return values
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [values.reshape(-1).float()])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    return flat[offset:].to(values.dtype)


__all__ = [
    "active",
    "all_gather",
    "all_reduce_gradients",
    "barrier",
    "batch_rounds",
    "broadcast",
    "broadcast_parameters",
    "gather",
    "gather_in_order",
    "is_main",
    "launched",
    "local_rank",
    "my_batches",
    "rank",
    "rank_gpu",
    "require_single",
    "setup",
    "split_batch",
    "teardown",
    "world_size",
]
