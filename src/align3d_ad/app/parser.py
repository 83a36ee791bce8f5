"""The ``align3d-ad`` argument parser: every subcommand and its options (the handlers are in
:mod:`align3d_ad.app.commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    add_backbone,
    add_common,
    add_config,
    add_deterministic,
    add_loading,
    add_report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="align3d-ad",
        description="Zero-shot 3D anomaly detection (Align3D-AD): per-point and per-object anomaly "
        "scores for point clouds of categories never trained on.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"align3d-ad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="synthetic data -> train -> zero-shot test -> report")
    p.add_argument("--out", type=Path, default=Path("align3d_demo"), help="output folder")
    p.add_argument("--fast", action="store_true", help="fewer samples and epochs (a smoke run)")
    add_backbone(p)
    add_report(p)
    add_common(p)

    p = sub.add_parser("synth", help="write a synthetic dataset in a benchmark's on-disk format")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", default="mvtec3d", choices=["mvtec3d", "real3d", "eyecandies"])
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--small", action="store_true", help="a few samples per category, in seconds")
    p.add_argument("--train-good", type=int, default=None, metavar="N",
                   help="normal training scans per category (default small 3, full 16; "
                   "Real3D-AD templates 2 / 4), e.g. 8 for test --shots 8")
    add_common(p)

    p = sub.add_parser("inspect", help="what a reader sees in a dataset: counts, sizes, problems")
    p.add_argument("--dataset", required=True, help="mvtec3d | eyecandies | real3d | folder")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_common(p)

    p = sub.add_parser("render", help="render the views of one sample to a PNG grid")
    p.add_argument("file", nargs="?", type=Path, help="a point-cloud file")
    p.add_argument("--dataset")
    p.add_argument("--root", type=Path)
    p.add_argument("--sample", help="sample id, e.g. bagel/test/crack/000")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--views", default=None, help="view preset (default: the dataset's, else mvtec3d)")
    p.add_argument("--size", type=int, default=336, help="image side in pixels")
    add_common(p)

    p = sub.add_parser("train", help="train both stages on auxiliary categories")
    add_config(p, required=True)
    p.add_argument("--root", type=Path, default=None, help="dataset root (overrides data.root)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    add_backbone(p)
    add_common(p)
    add_deterministic(p)

    p = sub.add_parser("test", help="score a dataset with a trained checkpoint and compute metrics")
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder written by train")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--skip-unlabelled", action="store_true",
                   help="skip (and count in the metrics) samples without ground truth instead of "
                   "stopping (eval.on_missing_gt=skip)")
    p.add_argument("--shots", type=int, default=None, metavar="K",
                   help="also score with K normal references per category from its train split "
                   "(1, 2, 4, 8), calibrated leave-one-out (K >= 2), beside zero-shot")
    p.add_argument("--draws", type=int, default=3, help="draws of K references averaged (3)")
    p.add_argument("--false-alarm-rate", type=float, default=0.01,
                   help="with --shots: the rate the thresholds are calibrated at (0.01)")
    add_config(p)
    add_backbone(p)
    add_loading(p)
    add_report(p)
    add_common(p)
    add_deterministic(p)

    p = sub.add_parser("predict", help="per-point scores for any point-cloud files or folders")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("inputs", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--glob", action="append", metavar="PATTERN",
                   help="in folders, score only files matching PATTERN (e.g. '*.tiff', "
                   "'xyz/*.tiff'; repeatable); without it, files that are not clouds are skipped")
    p.add_argument("--keep-going", action="store_true",
                   help="record bad clouds in object_scores.csv and go on (exit status 1)")
    p.add_argument("--calibration", type=Path, default=None, metavar="CAL_DIR",
                   help="folder written by calibrate: few-shot references, verdicts and masks")
    add_backbone(p)
    add_loading(p)
    add_report(p)
    add_common(p)
    add_deterministic(p)

    p = sub.add_parser("calibrate", help="few good scans -> few-shot references and thresholds")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--normals", nargs="+", type=Path, required=True, metavar="FILE_OR_DIR",
                   help="normal scans of the part (at least 2)")
    p.add_argument("--out", type=Path, required=True, metavar="CAL_DIR")
    p.add_argument("--false-alarm-rate", type=float, default=0.01,
                   help="share of normal parts (and points) flagged anomalous (default 0.01)")
    p.add_argument("--anomalous", nargs="+", type=Path, default=None, metavar="FILE_OR_DIR",
                   help="defective scans: pick the F1-best thresholds instead")
    p.add_argument("--fewshot-weight", type=float, default=None,
                   help="weight of the few-shot scores (default: method.fewshot_weight, 0.5)")
    p.add_argument("--glob", action="append", metavar="PATTERN", help="as for predict")
    add_backbone(p)
    add_common(p)

    p = sub.add_parser("reproduce", help="run one published row (training included)")
    add_config(p, required=True)
    p.add_argument("--root", type=Path, required=True, help="root of the training dataset")
    p.add_argument("--test-root", type=Path, default=None,
                   help="root of the test dataset for cross-dataset rows")
    p.add_argument("--out", type=Path, required=True)
    add_backbone(p)
    add_loading(p)
    add_report(p)
    add_common(p)
    add_deterministic(p)

    p = sub.add_parser("info", help="versions, device, backbones and whether their weights are here")
    p.add_argument("--json", action="store_true")
    add_backbone(p)
    add_common(p)
    return parser
