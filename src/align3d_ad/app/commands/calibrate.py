"""``align3d-ad calibrate``: a few good scans of a part -> few-shot references and thresholds.

Encodes the normal scans given with ``--normals`` with the checkpoint's backbone and views, scores
each against the others (leave-one-out) and writes ``CAL_DIR/calibration.json`` and
``CAL_DIR/references.safetensors`` (:mod:`align3d_ad.model.calibration`). Every input is checked
before the backbone is loaded; the folder is written whole or not at all.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ...data import load_point_cloud
from ...errors import Align3DError, ConfigError, DatasetFormatError
from ..inputs import find_inputs

logger = logging.getLogger(__name__)


def _prepared(paths: list[Path], globs, config, what: str) -> tuple[list, list[str]]:
    """Read and prepare every cloud of ``paths`` (the first bad one stops, naming the file)."""
    from ...data.prepare import prepare_sample
    from .predict import output_names

    clouds = find_inputs(paths, globs).clouds
    bad = [c for c in clouds if c.error is not None]
    if bad:
        raise DatasetFormatError(bad[0].path, f"{bad[0].error}; nothing was calibrated ({what})")
    out = []
    for cloud in clouds:
        try:
            sample = load_point_cloud(cloud.path, sample_id=str(cloud.path))
            out.append(prepare_sample(sample, config.data, seed=config.seed))
        except DatasetFormatError as err:
            raise DatasetFormatError(err.path, f"{err.problem}; nothing was calibrated") from err
        except Align3DError as err:
            raise DatasetFormatError(cloud.path, f"{err}; nothing was calibrated") from err
    return out, output_names([c.path for c in clouds])


def run(args: argparse.Namespace) -> int:
    from ...model.calibration import calibrate, save_calibration
    from ...model.detector import load_detector
    from ...model.thresholds import check_rate

    rate = check_rate(args.false_alarm_rate)
    if not args.normals:
        raise ConfigError("--normals must name at least 2 normal scans, got none")
    for path in [*args.normals, *(args.anomalous or [])]:
        if not path.exists():
            raise DatasetFormatError(path, "no such file or folder")
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
    )  # fmt: skip
    if args.fewshot_weight is not None:
        if not 0.0 <= args.fewshot_weight <= 1.0:
            raise ConfigError(f"--fewshot-weight must lie in [0, 1], got {args.fewshot_weight}")
        detector.config = detector.config.replace(**{"method.fewshot_weight": args.fewshot_weight})
    globs = getattr(args, "glob", None) or ()
    normals, names = _prepared(args.normals, globs, detector.config, "--normals")
    anomalous = None
    if args.anomalous:
        anomalous, _ = _prepared(args.anomalous, globs, detector.config, "--anomalous")
    cal, bank = calibrate(
        detector, normals, false_alarm_rate=rate, anomalous=anomalous, names=names,
        checkpoint=args.checkpoint,
    )  # fmt: skip
    save_calibration(args.out, cal, bank)
    for line in cal.warnings:
        logger.warning("calibrate: %s", line)
    o, p = cal.object_threshold, cal.point_threshold
    print(
        f"calibrated on {cal.num_references} normal scans: object threshold {o.value:.6g} "
        f"({o.how}), point threshold {p.value:.6g} ({p.how}) at false-alarm rate {rate:g}; "
        f"written to {args.out}"
    )
    return 0
