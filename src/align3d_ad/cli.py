"""The ``align3d-ad`` command: parses, builds a config, calls the Python API, prints results.

Every error a user can cause ends in one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import Align3DError

log = logging.getLogger("align3d_ad")

EXIT_USER_ERROR = 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from config, 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info messages")


def _config_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--config", type=Path, required=required, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.stage2_epochs=5 (repeatable)")


def _backbone_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None,
                        help="local backbone weights (state dict, safetensors or OpenAI TorchScript .pt)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="align3d-ad",
        description="Zero-shot 3D anomaly detection (Align3D-AD): per-point and per-object anomaly "
        "scores for point clouds of categories never trained on.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"align3d-ad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="synthetic data -> train -> zero-shot test -> report")
    p.add_argument("--out", type=Path, default=Path("align3d_demo"), help="output folder")
    p.add_argument("--fast", action="store_true", help="fewer samples and epochs (a smoke run)")
    _backbone_args(p)
    _common(p)

    p = sub.add_parser("synth", help="write a synthetic dataset in a benchmark's on-disk format")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", default="mvtec3d", choices=["mvtec3d", "real3d", "eyecandies"])
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--small", action="store_true", help="a few samples per category, in seconds")
    _common(p)

    p = sub.add_parser("inspect", help="what a reader sees in a dataset: counts, sizes, problems")
    p.add_argument("--dataset", required=True, help="mvtec3d | eyecandies | real3d | folder")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)

    p = sub.add_parser("render", help="render the views of one sample to a PNG grid")
    p.add_argument("file", nargs="?", type=Path, help="a point-cloud file")
    p.add_argument("--dataset")
    p.add_argument("--root", type=Path)
    p.add_argument("--sample", help="sample id, e.g. bagel/test/crack/000")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--views", default=None, help="view preset (default: the dataset's, else mvtec3d)")
    p.add_argument("--size", type=int, default=336, help="image side in pixels")
    _common(p)

    p = sub.add_parser("train", help="train both stages on auxiliary categories")
    _config_args(p, required=True)
    p.add_argument("--root", type=Path, default=None, help="dataset root (overrides data.root)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    _backbone_args(p)
    _common(p)

    p = sub.add_parser("test", help="score a dataset with a trained checkpoint and compute metrics")
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder written by train")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--out", type=Path, required=True)
    _config_args(p)
    _backbone_args(p)
    _common(p)

    p = sub.add_parser("predict", help="per-point scores for any point-cloud files or folders")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--out", type=Path, required=True)
    _backbone_args(p)
    _common(p)

    p = sub.add_parser("reproduce", help="run one published row (training included)")
    _config_args(p, required=True)
    p.add_argument("--root", type=Path, required=True, help="root of the training dataset")
    p.add_argument("--test-root", type=Path, default=None,
                   help="root of the test dataset for cross-dataset rows")
    p.add_argument("--out", type=Path, required=True)
    _backbone_args(p)
    _common(p)

    p = sub.add_parser("info", help="versions, device, backbones and whether their weights are here")
    p.add_argument("--json", action="store_true")
    _backbone_args(p)
    _common(p)
    return parser


def _setup_logging(quiet: bool) -> None:
    from .progress import set_quiet

    set_quiet(quiet)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)


#: Commands that run data-parallel under torchrun (the others refuse to).
DISTRIBUTED_COMMANDS = ("train", "test", "predict", "reproduce")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``align3d-ad`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["align3d-ad", *argv]
    from . import commands, distributed

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
        handler = getattr(commands, f"cmd_{args.command}")
        return int(handler(args) or 0)
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


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + os.linesep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
