"""Handlers of the ``align3d-ad`` subcommands: each parses nothing, builds a config, calls the API.

``train``, ``test``, ``predict`` and ``reproduce`` also run data-parallel under torchrun
(:mod:`align3d_ad.distributed`): every rank runs the handler, rank 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import distributed
from .config import Config, load_config
from .errors import ConfigError, DatasetFormatError

log = logging.getLogger("align3d_ad")


def _require_dir(path: Path, what: str = "folder") -> Path:
    if not path.exists():
        raise DatasetFormatError(path, f"{what} does not exist")
    return path


def _config(args: argparse.Namespace, path: Path | None = None) -> Config:
    """The config of a command: file (or defaults) + ``--set`` + the common flags."""
    overrides = list(getattr(args, "overrides", []) or [])
    overrides.append(f"device={args.device}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if getattr(args, "cache_dir", None) is not None:
        overrides.append(f"backbone.cache_dir={args.cache_dir}")
    if getattr(args, "no_cache", False):
        overrides.append("backbone.use_cache=false")
    if getattr(args, "weights", None) is not None:
        overrides.append(f"backbone.weights={args.weights}")
    return load_config(path, overrides)


def _start_run(
    args: argparse.Namespace, out: Path, config: Config | None, *, resume: bool = False
) -> Path:
    from .runs import attach_log_file, new_run_dir, write_run_info

    if not distributed.is_main():  # under torchrun rank 0 makes the folder and writes its files
        return distributed.broadcast(None)
    run_dir = new_run_dir(out, resume=resume)
    seed = config.seed if config is not None else (args.seed or 0)
    write_run_info(run_dir, config=config, seed=seed, command=args.command_line)
    attach_log_file(run_dir)
    return distributed.broadcast(run_dir)


def cmd_synth(args: argparse.Namespace) -> int:
    from .data.synth import generate_dataset

    manifest = generate_dataset(
        args.out, format=args.format, categories=args.categories,
        seed=0 if args.seed is None else args.seed, small=args.small,
    )  # fmt: skip
    counts = manifest.to_dict()["categories"]
    total = sum(s["samples"] for cat in counts.values() for s in cat.values())
    print(f"wrote {total} samples of {len(counts)} categories ({args.format} format) to {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .cli import print_json
    from .data.inspect import inspect_dataset
    from .progress import progress

    _require_dir(args.root, "dataset root")
    bar = iter(progress(iter(int, 1), desc="reading"))  # an endless counter bar
    report = inspect_dataset(args.dataset, args.root, on_sample=lambda *a: next(bar, None))
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .cli import print_json
    from .info import info_report

    report = info_report(_config(args))
    if args.json:
        print_json(report)
    else:
        from .info import info_text

        print(info_text(report))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .render_command import render_command

    if args.file is None and not (args.dataset and args.root and args.sample):
        raise ConfigError("render needs a FILE, or --dataset NAME --root DIR --sample ID")
    render_command(args)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train_model

    config = _config(args, args.config)
    if args.root is not None:
        config = config.replace(**{"data.root": str(_require_dir(args.root, "dataset root"))})
    run_dir = _start_run(args, args.out, config, resume=args.resume)
    result = train_model(config, run_dir, resume=args.resume)
    if not distributed.is_main():
        return 0
    print(f"trained {config.method.variant} on {', '.join(config.data.train_categories)}: {run_dir}")
    if result.history:
        print("last epoch:", result.history[-1])
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from .evaluate.runner import evaluate_dataset
    from .evaluate.tables import combine_runs, write_results
    from .train import load_detector, read_checkpoint

    _require_dir(args.root, "dataset root")
    doc = read_checkpoint(args.checkpoint)
    config = _config(args, args.config)
    run_dir = _start_run(args, args.out, config)
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
    )  # fmt: skip
    results = evaluate_dataset(
        detector, args.dataset, args.root, out_dir=run_dir, categories=args.categories,
        eval_config=config.eval,
    )  # fmt: skip
    if not distributed.is_main():
        return 0
    backbone = doc["backbone"]
    table = write_results(run_dir, combine_runs(
        {"test": results}, setting=f"test on {args.dataset}",
        backbone=f"{backbone['name']} ({backbone.get('source', 'weights')}; {backbone['fingerprint']})",
        random_weights=backbone["random_weights"],
    ))  # fmt: skip
    print(table)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_files

    written = predict_files(args)
    if not distributed.is_main():
        return 0
    print(f"scored {written} point clouds; results in {args.out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .evaluate.protocol import run_protocol
    from .evaluate.tables import to_markdown

    _require_dir(args.root, "dataset root")
    if args.test_root is not None:
        _require_dir(args.test_root, "test dataset root")
    config = _config(args, args.config)
    run_dir = _start_run(args, args.out, config)
    doc = run_protocol(config, run_dir, root=args.root, test_root=args.test_root,
                       weights=args.weights)  # fmt: skip
    if distributed.is_main():
        print(to_markdown(doc))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_dir = _start_run(args, args.out, None)
    report = run_demo(run_dir, device=args.device, seed=args.seed or 0, fast=args.fast,
                      weights=args.weights, cache_dir=args.cache_dir)  # fmt: skip
    sys.stdout.write(report.read_text(encoding="utf-8"))
    print(f"\nreport: {report}")
    return 0
