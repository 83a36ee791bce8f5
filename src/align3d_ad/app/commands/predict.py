"""``align3d-ad predict``: any point-cloud files or folders -> per-point scores and object scores.

For every input cloud it writes ``<name>.ply`` (points coloured by score, with ``anomaly_score``
per point), ``<name>.npy`` (float32 scores aligned with the points as read) and one row of
``object_scores.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from pathlib import Path

import numpy as np

from ... import distributed
from ..._atomic import atomic_path, atomic_write_text
from ...data import SUPPORTED_SUFFIXES, load_point_cloud
from ...errors import DatasetFormatError
from ...progress import progress
from ...viz.ply import save_scored_ply
from ..runs import attach_log_file, new_run_dir, write_run_info

#: Clouds scored together.
PREDICT_BATCH = 4


def find_inputs(inputs: list[Path]) -> list[Path]:
    """Every supported point-cloud file named, or found (recursively, sorted) in a named folder."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
            if not files:
                raise DatasetFormatError(path, f"folder holds no point clouds ({', '.join(SUPPORTED_SUFFIXES)})")
            found.extend(files)
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise DatasetFormatError(path, f"unsupported suffix {path.suffix!r}; supported: "
                                         f"{', '.join(SUPPORTED_SUFFIXES)}")  # fmt: skip
            found.append(path)
        else:
            raise DatasetFormatError(path, "no such file or folder")
    return found


def output_names(paths: list[Path]) -> list[str]:
    """Unique, file-system-safe output names (the stem, with parent folders when stems repeat)."""
    stems = [p.stem for p in paths]
    names = [
        "_".join([*p.parent.parts[-2:], p.stem]) if stems.count(p.stem) > 1 else p.stem for p in paths
    ]
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", n).strip("_") or "cloud" for n in names]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def predict_files(args: argparse.Namespace) -> int:
    """Score the inputs of ``args`` with the checkpoint of ``args``; return the number scored.

    Under torchrun the batches are shared out over the ranks and rank 0 writes every output.
    """
    from ...model.detector import load_detector

    paths = find_inputs(args.inputs)
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
    )  # fmt: skip
    run_dir = distributed.broadcast(new_run_dir(args.out) if distributed.is_main() else None)
    if distributed.is_main():
        write_run_info(run_dir, config=detector.config, seed=detector.config.seed,
                       command=getattr(args, "command_line", None))  # fmt: skip
        attach_log_file(run_dir)
    names = output_names(paths)
    rows = []
    # under torchrun each rank scores its share of the batches and rank 0 writes every output
    mine = distributed.my_batches(len(paths), PREDICT_BATCH)
    rounds = distributed.batch_rounds(len(paths), PREDICT_BATCH)
    for step in progress(range(rounds), desc="predict", total=rounds):
        scored = []
        if step < len(mine):
            start, stop = mine[step]
            samples = [load_point_cloud(p, sample_id=str(p)) for p in paths[start:stop]]
            preds = detector.predict(samples)
            scored = [(start + k, sample, pred.point_scores, pred.object_score)
                      for k, (sample, pred) in enumerate(zip(samples, preds))]  # fmt: skip
        gathered = distributed.gather_in_order(scored)
        if gathered is None:
            continue
        for index, sample, scores, object_score in gathered:
            name = names[index]
            with atomic_path(run_dir / f"{name}.npy") as tmp, tmp.open("wb") as fh:
                np.save(fh, scores)
            save_scored_ply(run_dir / f"{name}.ply", sample, scores, vmin=None, vmax=None)
            rows.append((name, str(paths[index]), sample.num_points, object_score))
    if not distributed.is_main():
        args.out = run_dir
        return len(paths)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "file", "points", "object_score"])
    writer.writerows((n, f, k, f"{s:.6f}") for n, f, k, s in rows)
    atomic_write_text(run_dir / "object_scores.csv", buffer.getvalue())
    args.out = run_dir
    return len(rows)


def run(args: argparse.Namespace) -> int:
    """The ``predict`` command."""
    written = predict_files(args)
    if not distributed.is_main():
        return 0
    print(f"scored {written} point clouds; results in {args.out}")
    return 0
