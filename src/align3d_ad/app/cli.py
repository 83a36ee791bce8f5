"""The ``align3d-ad`` command: parses, builds a config, calls the Python API, prints results.

Every error a user can cause ends in one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..errors import Align3DError
from .commands import DISTRIBUTED_COMMANDS, handler
from .parser import build_parser
from .runlock import held_folders, release_all

log = logging.getLogger("align3d_ad")

EXIT_USER_ERROR = 2


class TerminalFormatter(logging.Formatter):
    """Information as plain sentences; problems and debug records say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        if record.levelno < logging.INFO:
            return f"debug {record.name}: {text}"
        return text


def _setup_logging(quiet: bool, verbose: bool = False, *, other_rank: bool = False) -> None:
    """Log records on stderr, above the progress bars: errors only under ``--quiet``, warnings
    and up on the other ranks of a torchrun job, information by default, debug records too
    under ``--verbose``."""
    from ..progress import TerminalHandler, set_quiet

    set_quiet(quiet or other_rank)
    stream = TerminalHandler(verbose=verbose and not (quiet or other_rank))  # follows stderr
    stream.setFormatter(TerminalFormatter("%(message)s"))
    log.handlers[:] = [stream]
    level = (logging.ERROR if quiet else logging.WARNING if other_rank
             else logging.DEBUG if verbose else logging.INFO)  # fmt: skip
    log.setLevel(min(level, logging.INFO))  # run.log (INFO and up) sees every run's information
    stream.setLevel(level)


def _say(line: str) -> None:
    """One line on stderr, below any progress bar still drawn (never inside it)."""
    from ..progress import write_line

    write_line(line, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``align3d-ad`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["align3d-ad", *argv]
    from .. import distributed

    prefix = f"align3d-ad {args.command}"
    held_before = held_folders()  # a notebook's own locks outlive the command
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            distributed.setup(args.device)
        else:
            distributed.require_single(f"align3d-ad {args.command}")
        if distributed.active():
            prefix += f" [rank {distributed.rank()}]"
        # under torchrun only rank 0 shows progress and information; every rank shows problems
        _setup_logging(args.quiet, getattr(args, "verbose", False),
                       other_rank=not distributed.is_main())  # fmt: skip
        return int(handler(args.command)(args) or 0)
    except Align3DError as err:
        _say(f"{prefix}: error: {err}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _say(f"{prefix}: interrupted")
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        _say(f"{prefix}: error: {err}")
        return EXIT_USER_ERROR
    except RuntimeError as err:  # a loader worker killed while this process was busy elsewhere
        from ..data.loading import worker_died

        died = worker_died(err)
        if died is None:
            raise
        _say(f"{prefix}: error: {died}")
        return EXIT_USER_ERROR
    finally:
        release_all(keep=held_before)  # the run folder's lock (docs/runs.md)
        distributed.teardown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
