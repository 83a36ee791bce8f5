"""Run folders: never overwritten or shared, each holding its resolved config, versions, command
line and log, locked by the one process writing it (:mod:`.runlock`; docs/runs.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .. import distributed
from .._atomic import atomic_write_text
from ..errors import Align3DError, ConfigError
from ..versions import versions
from .runlock import LOCK_FILE, LockHolder, held_lock, try_lock

logger = logging.getLogger(__name__)

LOG_FILE = "run.log"
#: What a run folder holds before it produced anything (a run that failed at once): reusable
#: unless a live process holds its lock (a run still reading or extracting features).
RUN_INFO_FILES = frozenset({"config.yaml", "run.json", LOG_FILE})
#: Files a resumable run folder holds (written by ``train`` with its first checkpoint).
RUN_FILES = ("checkpoint.json", "state.pt")


def _unused(folder: Path) -> bool:
    """Whether ``folder`` holds no more than the run information of a run that produced nothing."""
    return {p.name for p in folder.iterdir()} <= RUN_INFO_FILES | {LOCK_FILE}


def _busy(path: Path, holder: LockHolder) -> str:
    return f"run folder {path} is in use by {holder.describe()}"


def _claim(folder: Path, command: list[str] | None) -> str | None:
    """Lock ``folder`` (made when missing) if it is free for a new run; else why it is not."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if not folder.is_dir():
            return "is not a folder"
        if not _unused(folder):  # never put a lock file into a folder that holds results
            return "holds results"
    lock = try_lock(folder, command)
    if isinstance(lock, LockHolder):
        return f"is in use by {lock.describe()}"
    if not _unused(folder):  # results written between the look and the lock
        lock.release()
        return "holds results"
    return None


def new_run_dir(
    path: str | Path, *, resume: bool = False, command: list[str] | None = None
) -> Path:
    """Create (or reuse) and lock the run folder of a command at ``path``; return it.

    The folder stays locked (``run.lock``) until the command ends (:func:`.runlock.release_all`)
    or the process exits. A folder holding results, or locked by a live process, is never
    written: unless ``resume`` is set, the first free name ``<path>-2``, ``<path>-3``, ... is used
    instead (and logged). A folder holding only the run information of a run that failed before
    producing anything is reused.

    With ``resume``, ``path`` must hold a run (``checkpoint.json`` and ``state.pt``) that no live
    process holds; else ConfigError, and nothing is written.
    """
    path = Path(path)
    if resume:
        _check_holds_run(path)
        lock = try_lock(path, command)
        if isinstance(lock, LockHolder):
            raise ConfigError(f"{_busy(path, lock)}; wait for that run to end, or resume later")
        return path
    names = itertools.chain([path], (Path(f"{path}-{n}") for n in itertools.count(2)))
    why = None
    for candidate in names:
        reason = _claim(candidate, command)
        if reason is None:
            break
        why = why or reason
    if candidate != path:
        logger.warning("%s %s; writing to %s instead", path, why, candidate)
    return candidate


def _check_holds_run(path: Path) -> None:
    """Refuse (ConfigError, nothing written) to resume a folder that holds no run."""
    if not path.is_dir():
        raise ConfigError(
            f"cannot resume {path}: no such folder; train without --resume to start a run there"
        )
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if not missing:
        return
    if (path / "config.yaml").is_file() and _unused(path):
        raise ConfigError(
            f"cannot resume {path}: its run stopped before its first checkpoint (no "
            f"{' or '.join(missing)}); train again without --resume (the folder is reused)"
        )
    raise ConfigError(
        f"cannot resume {path}: not a run folder (no {' or '.join(missing)}); --resume continues "
        "a run that `align3d-ad train` checkpointed there"
    )


def release_run_dir(run_dir: str | Path) -> None:
    """Release the lock this process holds on ``run_dir`` (a no-op when it holds none)."""
    lock = held_lock(run_dir)
    if lock is not None:
        lock.release()


def write_run_info(
    run_dir: Path,
    *,
    config: Any | None = None,
    seed: int | None = None,
    command: list[str] | None = None,
) -> None:
    """Save the resolved config (``config.yaml``), versions, command line and seed into ``run_dir``."""
    if config is not None:
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    info = {"command": command or sys.argv, "seed": seed, "versions": versions()}
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Send the library's log records (INFO and up) to ``run_dir/run.log`` as well."""
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger("align3d_ad").addHandler(handler)
    return handler


def start_run(
    args: argparse.Namespace, out: Path, config: Any | None, *, resume: bool = False
) -> Path:
    """Create and lock (rank 0) and share (every rank) the run folder of a command.

    A new run gets its run information (``config.yaml``, ``run.json``); a resumed run keeps
    its record byte for byte (``config``, when given, must match the run's, see
    :func:`align3d_ad.training.resume.check_resumable`) and only ``run.log`` says it resumed.
    Under torchrun rank 0 alone touches the folder; an error there is raised on every rank.
    """
    from ..training.resume import check_resumable, on_main_rank

    command = getattr(args, "command_line", None)

    def claim() -> Path:
        run_dir = new_run_dir(out, resume=resume, command=command)
        if resume and config is not None:
            try:
                check_resumable(run_dir, config)
            except Align3DError:
                release_run_dir(run_dir)
                raise
        return run_dir

    run_dir = on_main_rank(claim)
    if not distributed.is_main():  # under torchrun rank 0 makes the folder and writes its files
        return run_dir
    if resume:
        attach_log_file(run_dir)
        logger.info("resuming run %s: %s", run_dir, " ".join(command or sys.argv))
        return run_dir
    seed = config.seed if config is not None else (args.seed or 0)
    write_run_info(run_dir, config=config, seed=seed, command=command)
    attach_log_file(run_dir)
    return run_dir
