"""One module per ``align3d-ad`` subcommand, each with a ``run(args) -> int`` handler.

Handlers parse nothing (:mod:`align3d_ad.app.parser` does): they build a config, call the same
Python API a notebook uses, and print. ``train``, ``test``, ``predict`` and ``reproduce`` also run
data-parallel under torchrun (:mod:`align3d_ad.distributed`): every rank runs the handler, rank 0
alone writes and prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

#: Every subcommand, in the order ``--help`` lists them.
COMMANDS = (
    "demo", "synth", "inspect", "render", "train", "test", "predict", "calibrate", "reproduce",
    "info",
)  # fmt: skip
#: Commands that run data-parallel under torchrun (the others refuse to).
DISTRIBUTED_COMMANDS = ("train", "test", "predict", "reproduce")


def handler(name: str) -> Callable:
    """The ``run`` function of command ``name`` (its module is imported only now)."""
    return importlib.import_module(f"{__name__}.{name}").run
