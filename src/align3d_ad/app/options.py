"""Command-line options shared by several commands, and the config they resolve to."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config, load_config
from ..errors import DatasetFormatError


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--seed``, and ``--quiet`` or ``--verbose`` (every command)."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from config, 0)")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true",
                      help="no progress bars, information or warnings: only errors and the final "
                      "paths (run.log keeps everything)")
    talk.add_argument("--verbose", action="store_true",
                      help="debug messages too (exact values, internal details)")


def add_deterministic(parser: argparse.ArgumentParser) -> None:
    """``--deterministic`` (train, test, predict, reproduce)."""
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms only: bitwise-repeatable CUDA runs, a little "
                        "slower (see device.set_deterministic)")  # fmt: skip


def add_config(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` overrides."""
    parser.add_argument("--config", type=Path, required=required, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.stage2_epochs=5 (repeatable)")


def add_backbone(parser: argparse.ArgumentParser) -> None:
    """``--weights``, ``--cache-dir`` and ``--no-cache`` (commands that run the backbone)."""
    parser.add_argument("--weights", type=Path, default=None,
                        help="local backbone weights (state dict, safetensors or OpenAI TorchScript .pt)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_loading(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--batch-size`` (demo, test, predict, reproduce)."""
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes reading and preparing the next samples while the current "
                        "ones are scored; 0 = none (default: the CPU cores beyond two, at most "
                        "16 when a GPU scores, 2 on the CPU)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B",
                        help="samples rendered and scored together (B x views images per backbone "
                        "pass, in chunks of backbone.batch_size; default 4)")  # fmt: skip


def add_report(parser: argparse.ArgumentParser) -> None:
    """``--no-report`` (demo, test, predict, reproduce): no ``report.html``."""
    parser.add_argument("--no-report", action="store_true",
                        help="do not write report.html (the interactive report with the 3D viewer)")


def require_dir(path: Path, what: str = "folder") -> Path:
    """``path`` itself, or a DatasetFormatError naming it when it does not exist."""
    if not path.exists():
        raise DatasetFormatError(path, f"{what} does not exist")
    return path


def config_from_args(args: argparse.Namespace, path: Path | None = None) -> Config:
    """The config of a command: file (or defaults) + ``--set`` + the common flags."""
    overrides = list(getattr(args, "overrides", []) or [])
    overrides.append(f"device={args.device}")
    if getattr(args, "deterministic", False):
        overrides.append("deterministic=true")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if getattr(args, "workers", None) is not None:
        overrides.append(f"eval.workers={args.workers}")
    if getattr(args, "batch_size", None) is not None:
        overrides.append(f"eval.batch_size={args.batch_size}")
    if getattr(args, "cache_dir", None) is not None:
        overrides.append(f"backbone.cache_dir={args.cache_dir}")
    if getattr(args, "no_cache", False):
        overrides.append("backbone.use_cache=false")
    if getattr(args, "weights", None) is not None:
        overrides.append(f"backbone.weights={args.weights}")
    return load_config(path, overrides)
