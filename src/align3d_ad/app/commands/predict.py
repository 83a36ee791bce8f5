"""``align3d-ad predict``: any point-cloud files or folders -> per-point scores and object scores.

For every input cloud it writes ``<name>.npy`` (float32, one score per input row: (N,) for an
unorganised cloud, (H, W) for an organised grid such as a TIFF; NaN for rows that are not points),
``<name>.ply`` (the scored points, coloured by score, with ``anomaly_score`` per point) and one row
of ``object_scores.csv``, which is rewritten after every batch so it always lists the finished
clouds. Folders are searched as :mod:`align3d_ad.app.inputs` says (non-clouds skipped and
reported). Every input is checked cheaply before anything is written: a bad one stops the run
with one line, or, with ``--keep-going``, is recorded in the table (``status`` ``error``).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ... import distributed, profiling
from ..._atomic import atomic_path, atomic_write_text
from ...config import Config
from ...data import PointCloudSample, load_point_cloud
from ...data.loading import Failed, Loaded, default_workers, prefetch_batches
from ...data.prepare import PreparedSample, prepare_sample
from ...device import set_deterministic
from ...errors import Align3DError, DatasetFormatError
from ...progress import progress
from ...viz.ply import save_scored_ply
from ..inputs import SCORES_CSV, Candidate, find_inputs
from ..runs import attach_log_file, new_run_dir, write_run_info
from ..summary import finish

logger = logging.getLogger(__name__)

#: Clouds scored together.
PREDICT_BATCH = 4
#: Columns of ``object_scores.csv``: ``rows`` input rows (grid cells), ``points`` scored points
#: (the PLY's vertices), ``unscored`` rows with a NaN score; ``error`` why a cloud failed.
COLUMNS = ("name", "file", "status", "rows", "points", "unscored", "object_score", "error")
#: Columns added with ``--calibration``: the verdict (ok | anomalous), the thresholds it used and
#: the points above the point threshold (those set in ``<name>_mask.npy`` and the PLY).
CALIBRATED_COLUMNS = ("verdict", "object_threshold", "point_threshold", "anomalous_points")


@dataclass
class _Scored:
    sample: PointCloudSample
    point_scores: np.ndarray
    row_scores: np.ndarray | None
    object_score: float
    verdict: str | None = None


@dataclass
class _Failed:
    path: Path
    problem: str


def output_names(paths: list[Path]) -> list[str]:
    """Unique, file-system-safe output names (the stem, with parent folders when stems repeat)."""
    stems = [p.stem for p in paths]
    names = [
        "_".join([*p.parent.parts[-2:], p.stem]) if stems.count(p.stem) > 1 else p.stem
        for p in paths
    ]
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", n).strip("_") or "cloud" for n in names]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _failure(path: Path, err: Exception) -> _Failed:
    """The one-line problem of ``err`` (raised while reading or scoring ``path``)."""
    if isinstance(err, DatasetFormatError):
        return _Failed(err.path, err.problem)
    if isinstance(err, OSError):
        return _Failed(path, f"cannot read the file ({err.strerror or err})")
    return _Failed(path, str(err))


@dataclass(frozen=True)
class _ReadAndPrepare:
    """Input ``i`` read and prepared (runs in a worker process); a bad input raises."""

    clouds: list[Candidate]
    config: Config  #: the detector's
    device: torch.device  #: the detector's

    def __call__(self, index: int) -> PreparedSample:
        from ...model.detector import plan_ahead

        cloud = self.clouds[index]
        if cloud.error is not None:
            raise DatasetFormatError(cloud.path, cloud.error)
        with profiling.stage("read"):
            sample = load_point_cloud(cloud.path, sample_id=str(cloud.path))
        with profiling.stage("prepare"):
            prep = prepare_sample(sample, self.config.data, seed=self.config.seed)
            return plan_ahead(prep, self.config, self.device)


def _score_batch(detector, clouds: list[Candidate], items: list[Loaded],
                 on_prediction=None) -> list[tuple]:  # fmt: skip
    """``(index, _Scored | _Failed)`` for the loaded inputs ``items``; bad clouds never raise."""
    out: list[tuple] = []
    prepared = []
    for item in items:
        if isinstance(item.value, Failed):
            out.append((item.index, _failure(clouds[item.index].path, item.value.error)))
        else:
            prepared.append((item.index, item.value))
    if prepared:
        try:
            preds = detector.predict_prepared([prep for _, prep in prepared])
        except Align3DError as err:
            out.extend((index, _failure(clouds[index].path, err)) for index, _ in prepared)
        else:
            for (index, prep), p in zip(prepared, preds):
                scored = _Scored(
                    prep.original, p.point_scores, p.row_scores, p.object_score, p.verdict
                )
                if on_prediction is not None:  # e.g. the report's gallery
                    on_prediction(prep.original, p)
                out.append((index, scored))
    return sorted(out, key=lambda entry: entry[0])


def _write_outputs(run_dir: Path, name: str, scored: _Scored, calibration=None) -> list[str]:
    """Write ``<name>.npy`` and ``<name>.ply`` (and ``<name>_mask.npy`` when calibrated); return
    the table row's numbers (and, calibrated, the verdict columns)."""
    sample = scored.sample
    rows = scored.point_scores if scored.row_scores is None else scored.row_scores
    grid = rows.reshape(sample.grid_shape) if sample.is_organised else rows
    with atomic_path(run_dir / f"{name}.npy") as tmp, tmp.open("wb") as fh:
        np.save(fh, grid.astype(np.float32, copy=False))
    extra = None
    if calibration is not None:
        mask = calibration.mask(grid)  # NaN rows (not points) are never anomalous
        with atomic_path(run_dir / f"{name}_mask.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, mask)
        extra = {"anomalous": calibration.mask(scored.point_scores).astype(np.uint8)}
    save_scored_ply(run_dir / f"{name}.ply", sample, scored.point_scores, vmin=None, vmax=None,
                    extra_fields=extra)  # fmt: skip
    unscored = int(np.isnan(rows).sum())
    numbers = [str(rows.size), str(sample.num_points), str(unscored), f"{scored.object_score:.6f}"]
    if calibration is None:
        return numbers
    return numbers + [
        str(scored.verdict), f"{calibration.object_threshold.value:.6f}",
        f"{calibration.point_threshold.value:.6f}", str(int(mask.sum())),
    ]  # fmt: skip


def _write_table(run_dir: Path, rows: list[list[str]], calibrated: bool = False) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + CALIBRATED_COLUMNS if calibrated else COLUMNS)
    writer.writerows(rows)
    atomic_write_text(run_dir / SCORES_CSV, buffer.getvalue())


def _refuse_bad(clouds: list[Candidate]) -> None:
    """Stop with one line (nothing written) when a cheap look found a bad input."""
    bad = [c for c in clouds if c.error is not None]
    if bad:
        more = f" (and {len(bad) - 1} more bad input(s))" if len(bad) > 1 else ""
        raise DatasetFormatError(
            bad[0].path, f"{bad[0].error}{more}; nothing was scored (--keep-going scores the rest)"
        )


def predict_files(args: argparse.Namespace, on_detector=None) -> tuple[int, int, int]:
    """Score the inputs of ``args`` with the checkpoint of ``args``.

    ``on_detector``, when given, is called with the loaded detector and returns an
    ``on_prediction(sample, prediction)`` callback called with every scored cloud.

    Returns ``(scored clouds, failed clouds, unscored rows)``; with ``--calibration`` the verdicts
    are counted in ``args.verdicts`` (``{"ok": n, "anomalous": n}``). Under torchrun the batches are
    shared out over the ranks and rank 0 writes every output.
    """
    from ...model.detector import load_detector

    keep_going = bool(getattr(args, "keep_going", False))
    inputs = find_inputs(args.inputs, getattr(args, "glob", None) or ())
    if distributed.is_main() and inputs.skipped:
        logger.warning("predict: %s", inputs.skipped_line())
    clouds = inputs.clouds
    if not keep_going:
        _refuse_bad(clouds)
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
        calibration=getattr(args, "calibration", None),
    )  # fmt: skip
    on_prediction = on_detector(detector) if on_detector is not None else None
    calibration = detector.calibration
    args.verdicts = {"ok": 0, "anomalous": 0} if calibration is not None else None
    object_scores: list[float] = []
    run_dir = distributed.broadcast(new_run_dir(args.out) if distributed.is_main() else None)
    args.out = run_dir
    if distributed.is_main():
        write_run_info(run_dir, config=detector.config, seed=detector.config.seed,
                       command=getattr(args, "command_line", None))  # fmt: skip
        attach_log_file(run_dir)
        _write_table(run_dir, [], calibration is not None)
    names = output_names([c.path for c in clouds])
    rows: list[list[str]] = []
    scored = failed = unscored = 0
    # under torchrun each rank scores its share of the batches and rank 0 writes every output
    batch_size = getattr(args, "batch_size", None) or PREDICT_BATCH
    mine = distributed.my_batches(len(clouds), batch_size)
    rounds = distributed.batch_rounds(len(clouds), batch_size)
    workers = getattr(args, "workers", None)
    loaded = prefetch_batches(  # workers read and prepare the next batches meanwhile
        _ReadAndPrepare(clouds, detector.config, detector.encoder.device),
        [range(start, stop) for start, stop in mine],
        workers=default_workers(detector.encoder.device) if workers is None else workers,
    )  # fmt: skip
    for step in progress(range(rounds), desc="predict", total=rounds):
        entries = (_score_batch(detector, clouds, next(loaded), on_prediction=on_prediction)
                   if step < len(mine) else [])  # fmt: skip
        gathered = distributed.gather_in_order(entries)
        stop = None
        for index, outcome in gathered or []:
            name, file = names[index], str(clouds[index].path)
            if isinstance(outcome, _Failed):
                failed += 1
                error = f"{outcome.path}: {outcome.problem}"
                rows.append([name, file, "error", "", "", "", "", error]
                            + [""] * (len(CALIBRATED_COLUMNS) if calibration else 0))
                stop = stop or (None if keep_going else outcome)
                continue
            with profiling.stage("write"):
                numbers = _write_outputs(run_dir, name, outcome, calibration)
            rows.append([name, file, "ok", *numbers[:4], "", *numbers[4:]])
            if args.verdicts is not None:
                args.verdicts[str(outcome.verdict)] += 1
                object_scores.append(outcome.object_score)
            scored += 1
            unscored += int(numbers[2])
        if gathered is not None:
            _write_table(run_dir, [r for r in rows if keep_going or r[2] == "ok"],
                         calibration is not None)  # fmt: skip
        stop = distributed.broadcast(stop)
        if stop is not None:
            raise DatasetFormatError(
                stop.path,
                f"{stop.problem}; stopped: {SCORES_CSV} lists the {scored} cloud(s) finished "
                "(--keep-going goes on past bad clouds)",
            )
    detector.encoder.cache.flush()
    if calibration is not None and distributed.is_main():
        warning = calibration.spread_warning(object_scores)
        if warning:
            logger.warning("predict: %s", warning)
    return scored, failed, unscored


def run(args: argparse.Namespace) -> int:
    """The ``predict`` command (exit status 1 when ``--keep-going`` recorded failures)."""
    from .. import html

    set_deterministic(args.deterministic)  # --deterministic
    hook = html.ReportHook(per_kind=html.PREDICT_PER_KIND) if html.wanted(args) else None
    scored, failed, unscored = predict_files(args, on_detector=hook)
    if not distributed.is_main():
        return 0
    gaps = f" ({unscored} input rows unscored: NaN/inf or missing cells)" if unscored else ""
    lines = [f"scored {scored} point cloud{'s' if scored != 1 else ''}{gaps}"]
    if getattr(args, "verdicts", None) is not None:
        lines.append(f"verdicts: {args.verdicts['ok']} ok, {args.verdicts['anomalous']} anomalous")
    paths = [("run folder", args.out)]
    if hook is not None and scored:
        doc, facts = None, [("checkpoint", str(args.checkpoint))]
        cal = hook.detector.calibration
        if cal is not None:  # one calibration for every cloud: drawn in the viewer and the header
            t_obj, t_pt = cal.object_threshold.value, cal.point_threshold.value
            doc = {"thresholds": {"*": {"object": t_obj, "point": t_pt}}}
            facts.append(("calibration", f"{args.calibration} (K = {cal.num_references}; object "
                          f"threshold {t_obj:.6g}, point threshold {t_pt:.6g})"))  # fmt: skip
        path = html.write_report(args.out, title="align3d-ad predict", doc=doc, hook=hook,
                                 config=hook.detector.config, clouds=html.predicted_clouds(args.out),
                                 facts=facts)  # fmt: skip
        paths.append(("html", path))
    finish(args, lines, [*paths, ("scores", args.out / SCORES_CSV)])
    if failed:
        logger.warning("predict: %d point cloud(s) failed; see %s", failed, args.out / SCORES_CSV)
        return 1
    return 0
