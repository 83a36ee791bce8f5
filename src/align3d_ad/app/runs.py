"""Run folders: never overwritten, each holding its resolved config, versions, command line and log."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .. import distributed
from .._atomic import atomic_write_text
from ..versions import versions

LOG_FILE = "run.log"
#: What a run folder holds before it produced anything (a run that failed at once): reusable.
RUN_INFO_FILES = frozenset({"config.yaml", "run.json", LOG_FILE})


def new_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Create and return a fresh run folder at ``path``.

    A folder holding results is never overwritten: unless ``resume`` is set, the first free name
    ``<path>-2``, ``<path>-3``, ... is used instead (and logged). A folder holding only the run
    information of a run that failed before producing anything is reused.
    """
    path = Path(path)
    reusable = path.is_dir() and {p.name for p in path.iterdir()} <= RUN_INFO_FILES
    if resume or not path.exists() or reusable:
        path.mkdir(parents=True, exist_ok=True)
        return path
    n = 2
    while Path(f"{path}-{n}").exists():
        n += 1
    fresh = Path(f"{path}-{n}")
    logging.getLogger(__name__).warning("%s exists; writing to %s instead", path, fresh)
    fresh.mkdir(parents=True)
    return fresh


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
    """Create (rank 0) and share (every rank) the run folder of a command, with its run info."""
    if not distributed.is_main():  # under torchrun rank 0 makes the folder and writes its files
        return distributed.broadcast(None)
    run_dir = new_run_dir(out, resume=resume)
    seed = config.seed if config is not None else (args.seed or 0)
    write_run_info(run_dir, config=config, seed=seed, command=args.command_line)
    attach_log_file(run_dir)
    return distributed.broadcast(run_dir)
