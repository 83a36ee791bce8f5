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

log = logging.getLogger("align3d_ad")

EXIT_USER_ERROR = 2


def _setup_logging(quiet: bool) -> None:
    from ..progress import set_quiet

    set_quiet(quiet)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [stream]
    log.setLevel(logging.INFO)
    stream.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``align3d-ad`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["align3d-ad", *argv]
    from .. import distributed

    prefix = f"align3d-ad {args.command}"
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            distributed.setup(args.device)
        else:
            distributed.require_single(f"align3d-ad {args.command}")
        if distributed.active():
            prefix += f" [rank {distributed.rank()}]"
        # under torchrun only rank 0 shows progress and information; every rank shows problems
        _setup_logging(args.quiet or not distributed.is_main())
        return int(handler(args.command)(args) or 0)
    except Align3DError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        distributed.teardown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
