"""Progress bars and the terminal they share with log records.

:func:`progress` puts a tqdm bar on sample and epoch loops: silent under ``--quiet`` and off a
terminal (pipes, CI logs), so those never receive carriage-return redraws. :class:`TerminalHandler`
writes log records through ``tqdm.write``, which lifts the bars, prints the record on its own line
and redraws them below: a record never lands inside a bar.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = False

#: ``extra=`` of a log record whose content a progress bar already shows (e.g. an epoch's losses in
#: the stage bar's postfix): it reaches ``run.log`` in full, and the terminal only when no bar is
#: drawn or under ``--verbose``.
SHOWN_IN_BAR: dict[str, Any] = {"shown_in_bar": True}


def set_quiet(quiet: bool) -> None:
    """Switch all progress bars off (``--quiet``) or back on."""
    global _QUIET
    _QUIET = bool(quiet)


def bars_enabled() -> bool:
    """Whether progress bars are drawn: stderr is a terminal and quiet mode is off."""
    return not _QUIET and sys.stderr.isatty()


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None, leave: bool = False
) -> tqdm:
    """``iterable`` wrapped in a progress bar (drawn only when :func:`bars_enabled`).

    The result iterates like ``iterable``; ``set_postfix_str`` on it shows a short status beside
    the bar (a no-op when no bar is drawn). ``leave`` keeps the finished bar on screen.
    """
    return tqdm(iterable, desc=desc, total=total, disable=not bars_enabled(), leave=leave,
                dynamic_ncols=True)  # fmt: skip


def write_line(text: str, file: Any = None) -> None:
    """Write ``text`` and a newline to ``file`` (default stderr) above any bar being drawn."""
    tqdm.write(text, file=file if file is not None else sys.stderr)


class TerminalHandler(logging.StreamHandler):
    """A stream handler that writes each record above the progress bars, never into one.

    Records marked :data:`SHOWN_IN_BAR` are left out while bars are drawn, unless ``verbose``.
    Without a ``stream`` it writes to whatever ``sys.stderr`` is when a record comes (so a
    redirected or replaced stderr, as in notebooks and tests, never holds a closed stream).
    """

    def __init__(self, stream: Any = None, *, verbose: bool = False) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None
        self.verbose = verbose
        self.addFilter(self._not_in_bar)

    def flush(self) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().flush()

    def _not_in_bar(self, record: logging.LogRecord) -> bool:
        """False for a :data:`SHOWN_IN_BAR` record while bars are drawn (and not verbose)."""
        return self.verbose or not getattr(record, "shown_in_bar", False) or not bars_enabled()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._follow_stderr:
                self.stream = sys.stderr
            write_line(self.format(record), self.stream)
            self.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler does
            raise
        except Exception:  # pragma: no cover
            self.handleError(record)
