"""The one progress-bar helper: tqdm on sample/epoch loops, silent under ``--quiet`` or off a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Switch all progress bars off (``--quiet``) or back on."""
    global _QUIET
    _QUIET = bool(quiet)


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar when stderr is a terminal and quiet mode is off."""
    disable = _QUIET or not sys.stderr.isatty()
    yield from tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, dynamic_ncols=True)
