"""The saved scores of one test category, and the metrics computed from them (METHOD.md §7).

Everything the metrics need is kept per sample and written to ``scores/<category>.npz``, so the
numbers in ``metrics.json`` can always be recomputed from the saved scores
(:func:`CategoryScores.load` then :meth:`CategoryScores.metrics`).

Point metrics come in two variants, named plainly:

* ``foreground``: over the object's points only (the honest definition, the default): the valid
  points the detector scored, i.e. without the background plane that preprocessing removes, plus
  every anomalous point (an anomalous point removed as background counts, with score 0, as missed).
  AUPRO regions: 8-connected components of the GT on the organised grid, read at the points; for
  unorganised clouds, connected components of the anomalous points under a radius graph
  (:func:`~align3d_ad.evaluate.regions.point_regions`).
* ``grid``: over the organised grid resized to ``grid_size`` x ``grid_size`` with the legacy nearest
  mapping (as PointAD and Align3D-AD do), every cell included and background scored 0.
  Undefined (NaN) for unorganised clouds.
* ``reference``: the arithmetic of the published tables (REFERENCE.md §4, :mod:`.reference`): GT
  bilinear-resized to ``grid_size`` then > 0.5, every cell with the score the post-processing left
  there (the reference post-processing's blurred 336 x 336 map when the detector gives one, else
  the nearest-resized grid with background 0), cflow-style AUPRO; for unorganised clouds P-AUROC
  over every point scored (Real3D-AD: the resampled points), no AUPRO.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..data.preprocess import grid_resize_index
from ..data.sample import PointCloudSample
from ..errors import DatasetFormatError
from ._inputs import UndefinedMetricWarning
from .metrics import object_metrics, point_metrics
from .reference import reference_gt, reference_point_metrics
from .regions import grid_regions, point_regions


@dataclass
class SampleScores:
    """What the metrics keep of one sample: its scored points, labels, regions and grid maps."""

    sample_id: str
    label: int
    object_score: float
    point_scores: np.ndarray
    point_labels: np.ndarray
    point_regions: np.ndarray
    grid_scores: np.ndarray | None = None
    grid_labels: np.ndarray | None = None
    reference_scores: np.ndarray | None = None
    reference_labels: np.ndarray | None = None


@dataclass
class CategoryScores:
    """Per-sample scores and labels of one test category."""

    category: str
    grid_size: int = 336
    sample_ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    object_scores: list[float] = field(default_factory=list)
    point_scores: list[np.ndarray] = field(default_factory=list)
    point_labels: list[np.ndarray] = field(default_factory=list)
    point_regions: list[np.ndarray] = field(default_factory=list)
    grid_scores: list[np.ndarray] = field(default_factory=list)
    grid_labels: list[np.ndarray] = field(default_factory=list)
    reference_scores: list[np.ndarray] = field(default_factory=list)
    reference_labels: list[np.ndarray] = field(default_factory=list)

    def score(
        self,
        sample: PointCloudSample,
        point_scores: np.ndarray,
        object_score: float,
        *,
        foreground: np.ndarray | None = None,
        reference: tuple[np.ndarray, np.ndarray | None] | None = None,
    ) -> SampleScores:
        """What :meth:`append` records for one labelled sample's prediction (nothing is stored).

        Args:
            sample: The sample as read (with labels and point labels).
            point_scores: (N,) scores of its points.
            object_score: Its object score.
            foreground: bool (N,) points the detector scored; None = all.
            reference: What reference post-processing scored, for the ``reference`` variant:
                organised, ``(map, None)`` with the (grid_size, grid_size) map; unorganised,
                ``(scores, labels)`` of the resampled points. None = built from ``point_scores``.
        """
        if sample.label is None or sample.point_labels is None:
            missing = "label" if sample.label is None else "point labels (no ground truth)"
            raise DatasetFormatError(
                sample.source or sample.sample_id or "sample",
                f"sample {sample.sample_id!r} must have labels to be evaluated, got no {missing}",
            )
        labels = np.asarray(sample.point_labels, dtype=bool)
        point_scores = np.asarray(point_scores, dtype=np.float32)
        keep = labels | (True if foreground is None else np.asarray(foreground, dtype=bool))
        entry = SampleScores(
            sample_id=sample.sample_id, label=int(sample.label), object_score=float(object_score),
            point_scores=point_scores[keep], point_labels=labels[keep],
            point_regions=np.zeros(0, dtype=np.int64),
        )  # fmt: skip
        if sample.is_organised:
            gt = sample.meta.get("gt_grid")
            gt = sample.to_grid(labels, fill=False) if gt is None else np.asarray(gt, dtype=bool)
            entry.point_regions = grid_regions(gt).reshape(-1)[sample.grid_index][keep]
            src = grid_resize_index(sample.grid_shape, self.grid_size)
            size = (self.grid_size, self.grid_size)
            entry.grid_scores = sample.to_grid(point_scores).reshape(-1)[src].reshape(size)
            entry.grid_labels = gt.reshape(-1)[src].reshape(size)
            entry.reference_labels = reference_gt(gt, self.grid_size)
            entry.reference_scores = entry.grid_scores
            if reference is not None:
                entry.reference_scores = _checked_map(reference[0], size, sample)
        else:
            entry.point_regions = point_regions(sample.points[keep], labels[keep])
            entry.reference_scores, entry.reference_labels = point_scores, labels
            if reference is not None:
                entry.reference_scores = np.asarray(reference[0], dtype=np.float32)
                entry.reference_labels = np.asarray(reference[1], dtype=bool)
        return entry

    def append(self, entry: SampleScores) -> None:
        """Record one sample's scores (from :meth:`score`, possibly computed in another process)."""
        self.sample_ids.append(entry.sample_id)
        self.labels.append(entry.label)
        self.object_scores.append(entry.object_score)
        self.point_scores.append(entry.point_scores)
        self.point_labels.append(entry.point_labels)
        self.point_regions.append(entry.point_regions)
        if entry.grid_scores is not None:
            self.grid_scores.append(entry.grid_scores)
            self.grid_labels.append(entry.grid_labels)
        if entry.reference_scores is not None:
            self.reference_scores.append(entry.reference_scores)
            self.reference_labels.append(entry.reference_labels)

    def add(
        self,
        sample: PointCloudSample,
        point_scores: np.ndarray,
        object_score: float,
        *,
        foreground: np.ndarray | None = None,
        reference: tuple[np.ndarray, np.ndarray | None] | None = None,
    ) -> None:
        """Record the prediction for one labelled sample (:meth:`score` then :meth:`append`)."""
        self.append(self.score(
            sample, point_scores, object_score, foreground=foreground, reference=reference
        ))  # fmt: skip

    def metrics(self, *, method: str = "exact", max_fpr: float = 0.3) -> dict[str, dict[str, float]]:
        """{"object": {o_auroc, o_ap}, and {p_auroc, aupro} of "foreground", "grid", "reference"}."""
        opts = {"method": method, "max_fpr": max_fpr}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            out = {"object": object_metrics(self.labels, self.object_scores).to_dict()}
            out["foreground"] = point_metrics(
                self.point_labels, self.point_scores, self.point_regions, **opts
            ).to_dict()
            if self.grid_scores and len(self.grid_scores) == len(self.labels):
                out["grid"] = point_metrics(self.grid_labels, self.grid_scores, **opts).to_dict()
            else:
                out["grid"] = {"p_auroc": math.nan, "aupro": math.nan}
            if self.reference_scores and len(self.reference_scores) == len(self.labels):
                out["reference"] = reference_point_metrics(
                    self.reference_labels, self.reference_scores
                ).to_dict()
            else:
                out["reference"] = {"p_auroc": math.nan, "aupro": math.nan}
        return out

    def save(self, path: str | Path) -> None:
        """Write everything to one ``.npz`` (atomically)."""
        counts = np.array([len(s) for s in self.point_scores], dtype=np.int64)
        arrays = {
            "category": np.array(self.category), "grid_size": np.array(self.grid_size),
            "sample_ids": np.array(self.sample_ids), "labels": np.array(self.labels, dtype=np.int8),
            "object_scores": np.array(self.object_scores, dtype=np.float64),
            "point_counts": counts,
            "point_scores": _cat(self.point_scores, np.float32),
            "point_labels": _cat(self.point_labels, bool),
            "point_regions": _cat(self.point_regions, np.int64),
        }  # fmt: skip
        if self.grid_scores:
            arrays["grid_scores"] = np.stack(self.grid_scores).astype(np.float32)
            arrays["grid_labels"] = np.stack(self.grid_labels)
        if self.reference_scores:
            arrays["reference_shapes"] = np.array(
                [(*a.shape, 0)[:2] for a in self.reference_scores], dtype=np.int64
            )
            arrays["reference_scores"] = _cat([a.reshape(-1) for a in self.reference_scores],
                                              np.float32)  # fmt: skip
            arrays["reference_labels"] = _cat([a.reshape(-1) for a in self.reference_labels], bool)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> CategoryScores:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            splits = np.cumsum(data["point_counts"])[:-1]
            out = cls(
                category=str(data["category"]), grid_size=int(data["grid_size"]),
                sample_ids=[str(s) for s in data["sample_ids"]],
                labels=[int(v) for v in data["labels"]],
                object_scores=[float(v) for v in data["object_scores"]],
                point_scores=np.split(data["point_scores"], splits),
                point_labels=np.split(data["point_labels"], splits),
                point_regions=np.split(data["point_regions"], splits),
            )  # fmt: skip
            if "grid_scores" in data:
                out.grid_scores = list(data["grid_scores"])
                out.grid_labels = list(data["grid_labels"])
            if "reference_shapes" in data:
                shapes = [tuple(int(v) for v in row if v > 0) for row in data["reference_shapes"]]
                cuts = np.cumsum([math.prod(sh) for sh in shapes])[:-1]
                out.reference_scores = [a.reshape(sh) for a, sh in
                                        zip(np.split(data["reference_scores"], cuts), shapes)]
                out.reference_labels = [a.reshape(sh) for a, sh in
                                        zip(np.split(data["reference_labels"], cuts), shapes)]
        return out


def _checked_map(value: np.ndarray, size: tuple[int, int], sample: PointCloudSample) -> np.ndarray:
    """A reference score map, checked to have the evaluation grid's shape."""
    value = np.asarray(value, dtype=np.float32)
    if value.shape != size:
        raise DatasetFormatError(
            sample.source or sample.sample_id or "sample",
            f"reference score map must have shape {size} (eval.grid_size), got {value.shape}",
        )
    return value


def _cat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)
