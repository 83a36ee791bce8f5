"""Preparing a sample for rendering, and carrying its scores back to the sample as read.

Organised top-view scans (MVTec 3D-AD, Eyecandies) hold the supporting plane and stray clutter;
like every published pipeline we remove them first (BTF recipe, :mod:`.preprocess`). Unorganised
clouds (Real3D-AD, user scans) are complete objects and are rendered as they are. Very large clouds
may be subsampled for rendering (``max_points``); every point of the sample still gets a score.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .._threads import one_blas_thread
from ..config import MIN_CLOUD_POINTS, DataConfig
from ..errors import DatasetFormatError
from .preprocess import keep_largest_cluster, remove_background_plane
from .sample import PointCloudSample, bounds, float32_steps

logger = logging.getLogger(__name__)

#: A background cut must leave at least this many points, else the sample is kept whole.
MIN_FOREGROUND_POINTS = 32
#: Fewer float32 steps than this across a cloud (its coordinates are large for its size): warn
#: that the stored points are rounded (a float32 cloud at 1e4 m keeps 1 mm steps).
MIN_FLOAT32_STEPS = 2**12


@dataclass
class PreparedSample:
    """A sample as rendered and the way back to the sample as read.

    Attributes:
        sample: The points that are rendered and scored.
        original: The sample as read.
        foreground: int64 rows of ``original`` that survived background removal (sorted).
        rendered: int64 rows of ``foreground`` that were rendered (all of them unless subsampled).
        extras: What was computed ahead for the scorer from the points alone, e.g. the 3D
            smoothing neighbours (``"smoothing"``), made in a loader worker.
    """

    sample: PointCloudSample
    original: PointCloudSample
    foreground: np.ndarray
    rendered: np.ndarray
    extras: dict = dataclasses.field(default_factory=dict)

    def lift(self, scores: np.ndarray) -> np.ndarray:
        """Scores of the rendered points (n, ...) -> scores of every original point (N, ...).

        Foreground points that were not rendered take their nearest rendered point's score;
        removed background points score 0.
        """
        scores = np.asarray(scores)
        fg_points = self.original.points[self.foreground]
        if len(self.rendered) == len(self.foreground):
            fg_scores = scores
        else:
            tree = cKDTree(fg_points[self.rendered])
            _, nearest = tree.query(fg_points, k=1)
            fg_scores = scores[nearest]
        out = np.zeros((self.original.num_points, *scores.shape[1:]), dtype=scores.dtype)
        out[self.foreground] = fg_scores
        return out


def _largest_grid_component(sample: PointCloudSample) -> PointCloudSample:
    """Keep the largest 8-connected component of the sample's cells on its organised grid.

    Cells are joined across single missing pixels (a 3 x 3 closing of the occupancy), so the
    scanner's scattered drop-outs do not split an object. Milliseconds where a 3D DBSCAN over a
    full-resolution scan takes seconds; set ``data.cluster_radius`` for the 3D (BTF) behaviour.
    """
    h, w = sample.grid_shape
    occupied = np.zeros(h * w, dtype=bool)
    occupied[sample.grid_index] = True
    occupied = occupied.reshape(h, w)
    bridged = ndimage.binary_closing(occupied, structure=np.ones((3, 3), bool)) | occupied
    labels, count = ndimage.label(bridged, structure=np.ones((3, 3), dtype=int))
    if count <= 1:
        return sample
    point_labels = labels.reshape(-1)[sample.grid_index]
    biggest = int(np.argmax(np.bincount(point_labels, minlength=count + 1)[1:])) + 1
    return _take(sample, np.flatnonzero(point_labels == biggest))


def _remove_background(sample: PointCloudSample, config: DataConfig, seed: int) -> PointCloudSample:
    out = sample
    if config.remove_background:
        try:
            out = remove_background_plane(
                out, fit_threshold=config.plane_fit_threshold,
                cut_distance=config.plane_cut_distance, seed=seed,
            )  # fmt: skip
        except DatasetFormatError:
            logger.info("%s: no background border to fit; plane removal skipped", sample.sample_id)
    if config.keep_largest_cluster and out.num_points > MIN_FOREGROUND_POINTS:
        if config.cluster_radius is not None:
            out = keep_largest_cluster(out, radius=config.cluster_radius)
        else:
            out = _largest_grid_component(out)
    if out.num_points < MIN_FOREGROUND_POINTS:
        logger.warning(
            "%s: background removal left %d points; the sample is kept whole",
            sample.sample_id, out.num_points,
        )  # fmt: skip
        return sample
    return out


def _where(sample: PointCloudSample) -> str:
    """The file of ``sample``, else its ``category/sample_id``, for messages."""
    if sample.source is not None:
        return str(sample.source)
    return "/".join(p for p in (sample.category, sample.sample_id) if p) or "<point cloud>"


def _check_renderable(sample: PointCloudSample, where: str) -> None:
    """Refuse a cloud that would get one constant score: too few points or no extent.

    Also warns when float32 resolves the cloud coarsely (coordinates far from the origin for its
    size): the rounding happened when the cloud was stored, so the scores depend on the offset.
    """
    n = sample.num_points
    if n < MIN_CLOUD_POINTS:
        raise DatasetFormatError(
            where, f"has {n} valid point{'s' * (n != 1)}; at least {MIN_CLOUD_POINTS} are needed to "
            "score a cloud (fewer render as a few splats and every point gets the same score)",
        )  # fmt: skip
    lo, hi = bounds(sample.points)
    extent = float((hi - lo).max())
    if extent == 0:
        raise DatasetFormatError(
            where, f"all {n} points are the same point ({', '.join(f'{v:.6g}' for v in lo)}); "
            "a cloud with no extent cannot be rendered or scored",
        )  # fmt: skip
    steps = float32_steps(lo, hi)
    if steps < MIN_FLOAT32_STEPS:
        logger.warning(
            "%s: coordinates reach %.3g but the cloud spans only %.3g, so float32 points keep "
            "%d steps across it and its shape is rounded; centre the cloud before saving it "
            "(scores then do not depend on the offset)",
            where, float(np.maximum(np.abs(lo), np.abs(hi)).max()), extent, int(steps),
        )  # fmt: skip


def prepare_sample(sample: PointCloudSample, config: DataConfig, *, seed: int = 0) -> PreparedSample:
    """Remove the background of organised scans and subsample big clouds, as ``config`` says.

    Raises:
        DatasetFormatError: naming the sample's file, when it has NaN/inf points, fewer than
            :data:`~align3d_ad.config.MIN_CLOUD_POINTS` points, or all its points coincide.
    """
    with one_blas_thread():
        return _prepare(sample, config, seed)


def _prepare(sample: PointCloudSample, config: DataConfig, seed: int) -> PreparedSample:
    where = _where(sample)
    if sample.num_points == 0:
        raise DatasetFormatError(where, "point cloud has no valid points")
    finite = np.isfinite(sample.points).all()  # one flat pass; rows counted only when needed
    bad = 0 if finite else int((~np.isfinite(sample.points).all(axis=1)).sum())
    if bad:
        raise DatasetFormatError(
            where, f"{bad} of {sample.num_points} points are NaN or inf; drop them first "
            "(load_point_cloud and PointCloudSample.from_points do)",
        )  # fmt: skip
    foreground = np.arange(sample.num_points, dtype=np.int64)
    work = sample
    if sample.is_organised and (config.remove_background or config.keep_largest_cluster):
        work = _remove_background(sample, config, seed)
        if work is not sample:
            foreground = np.searchsorted(sample.grid_index, work.grid_index).astype(np.int64)
    rendered = np.arange(work.num_points, dtype=np.int64)
    if config.max_points is not None and work.num_points > config.max_points:
        rng = np.random.default_rng([seed, work.num_points])
        rendered = np.sort(rng.choice(work.num_points, size=config.max_points, replace=False))
        work = _take(work, rendered)
    _check_renderable(work, where)
    return PreparedSample(work, sample, foreground, rendered)


def _take(sample: PointCloudSample, rows: np.ndarray) -> PointCloudSample:
    def pick(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[rows]

    return dataclasses.replace(
        sample, points=sample.points[rows], colors=pick(sample.colors),
        point_labels=pick(sample.point_labels), grid_index=pick(sample.grid_index),
        source_index=pick(sample.source_index),
    )  # fmt: skip
