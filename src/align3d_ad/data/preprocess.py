"""Preprocessing of point-cloud samples (DATASETS.md §1.4-1.5); never writes files.

* :func:`remove_background_plane`: the BTF/M3DM recipe, vectorised. Candidate planes come from random
  3-point draws over the valid points of the image border, all hypotheses are scored by batched
  matrix products, the best plane is refitted by least squares on its inliers, and every point
  closer than ``cut_distance`` to it is dropped.
* :func:`keep_largest_cluster`: DBSCAN semantics (Open3D's ``cluster_dbscan`` as BTF uses it): core
  points have >= ``min_points`` neighbours within ``radius`` (themselves included), clusters are the
  connected components of the radius graph over core points, border points join the cluster of
  their nearest core point. Unlike BTF, the noise label never wins the vote for the largest cluster.
* :func:`grid_resize_index` / :func:`resize_grid`: the legacy nearest mapping of
  ``torch.nn.functional.interpolate(mode="nearest")`` (source = floor(dst * in / out), float32).
* :func:`normalise_to_unit_sphere`: centre on the centroid, scale into the unit ball.

Samples are never modified: each function returns a new :class:`PointCloudSample` whose points,
colours, point labels and grid indices are subset (or resampled) together.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .._checks import check_shape
from ..errors import DatasetFormatError
from .sample import PointCloudSample

logger = logging.getLogger(__name__)

BORDER = 10  # border strip width in pixels, BTF utils/preprocessing.py (DATASETS.md §1.4)
FIT_THRESHOLD = 0.004  # m, RANSAC inlier distance, BTF
CUT_DISTANCE = 0.005  # m, points nearer the plane are background, BTF
ITERATIONS = 1000  # RANSAC hypotheses, BTF
CLUSTER_RADIUS = 0.006  # m, DBSCAN eps, BTF
CLUSTER_MIN_POINTS = 30  # DBSCAN min_points, BTF
#: Point-hypothesis distances per batched product (2 MB of float64: the passes over it stay in
#: cache; 3.5x faster than 2**22 on an 800 x 800 scan's border, same counts).
SCORE_BUDGET = 2**18
PAIR_BUDGET = 2**23  # neighbour pairs materialised at once when linking clusters (~128 MB)


def _subset(sample: PointCloudSample, keep: np.ndarray, **meta) -> PointCloudSample:
    """A new sample with the rows ``keep`` (bool or index) of every per-point array."""

    def pick(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[keep]

    return dataclasses.replace(
        sample,
        points=sample.points[keep],
        colors=pick(sample.colors),
        point_labels=pick(sample.point_labels),
        grid_index=pick(sample.grid_index),
        source_index=pick(sample.source_index),
        meta={**sample.meta, **meta},
    )


def _border_points(sample: PointCloudSample, border: int) -> np.ndarray:
    """Points lying in the ``border``-pixel frame of the grid (all points if unorganised)."""
    if not sample.is_organised:
        return sample.points
    h, w = sample.grid_shape
    rows, cols = np.divmod(sample.grid_index, w)
    frame = (rows < border) | (rows >= h - border) | (cols < border) | (cols >= w - border)
    return sample.points[frame]


def fit_plane_ransac(
    points: np.ndarray, *, threshold: float, iterations: int, seed: int = 0
) -> tuple[np.ndarray, float, int]:
    """Fit a plane ``n . p + d = 0`` by RANSAC over 3-point draws, then least squares on the inliers.

    Args:
        points: (N, 3) candidate points, N >= 3.
        threshold: Inlier distance.
        iterations: Number of 3-point hypotheses (all scored, in batches).
        seed: Seed of the draws.

    Returns:
        Unit normal (3,), offset d and the number of inliers of the refitted plane.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = check_shape(pts, "N 3", name="points")["N"]
    if n < 3:
        raise ValueError(f"plane fit needs at least 3 points, got {n}")
    draw = np.random.default_rng(seed).integers(0, n, size=(iterations, 3))
    a, b, c = pts[draw[:, 0]], pts[draw[:, 1]], pts[draw[:, 2]]
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1)
    usable = length > 1e-12 * max(float(np.ptp(pts, axis=0).max()), 1e-12) ** 2
    normals = normals / np.where(usable, length, 1.0)[:, None]
    offsets = -np.einsum("ij,ij->i", normals, a)
    counts = np.full(iterations, -1, dtype=np.int64)
    step = max(1, SCORE_BUDGET // n)
    coords = np.ascontiguousarray(pts.T)  # (3, N): each hypothesis' distances are one row
    for start in range(0, iterations, step):  # batches of hypotheses, each one matrix product
        dist = normals[start : start + step] @ coords
        dist += offsets[start : start + step, None]
        np.abs(dist, out=dist)
        counts[start : start + step] = np.count_nonzero(dist < threshold, axis=1)
    counts[~usable] = -1
    if counts.max() < 3:
        raise ValueError("plane fit found no non-degenerate 3-point hypothesis (collinear points?)")
    best = int(np.argmax(counts))
    inliers = pts[np.abs(pts @ normals[best] + offsets[best]) < threshold]
    centre = inliers.mean(axis=0)
    normal = np.linalg.svd(inliers - centre, full_matrices=False)[2][-1]
    offset = -float(normal @ centre)
    return normal, offset, int((np.abs(pts @ normal + offset) < threshold).sum())


def remove_background_plane(
    sample: PointCloudSample,
    *,
    border: int = BORDER,
    fit_threshold: float = FIT_THRESHOLD,
    cut_distance: float = CUT_DISTANCE,
    iterations: int = ITERATIONS,
    seed: int = 0,
) -> PointCloudSample:
    """Drop the supporting plane of a top-view scan (BTF recipe, DATASETS.md §1.4).

    The plane is fitted to the valid points of the ``border``-pixel frame of the organised grid.
    Unorganised samples have no border: all points are candidates, so the plane must then be the
    dominant plane of the cloud.

    Args:
        sample: Scan in metres (organised for the BTF behaviour).
        border: Width of the border frame in pixels.
        fit_threshold: RANSAC inlier distance.
        cut_distance: Points nearer than this to the plane are removed.
        iterations: RANSAC hypotheses.
        seed: Seed of the RANSAC draws (same seed, same result).

    Returns:
        A new sample without the plane; ``meta["background_plane"]`` holds (a, b, c, d).

    Raises:
        DatasetFormatError: fewer than 3 valid border points (e.g. the scan was already
            background-removed: its border is all missing points).
    """
    if border < 1 or iterations < 1 or fit_threshold <= 0 or cut_distance < 0:
        raise ValueError(
            "border and iterations must be >= 1, fit_threshold > 0 and cut_distance >= 0, got "
            f"{border}, {iterations}, {fit_threshold}, {cut_distance}"
        )
    candidates = _border_points(sample, border)
    if len(candidates) < 3:
        where = sample.source or Path(sample.sample_id or "<sample>")
        raise DatasetFormatError(
            where,
            f"background plane fit must have >= 3 valid points in the {border}-pixel image border, "
            f"got {len(candidates)}; the scan looks already background-removed "
            "(run this step on the raw scan, or skip it)",
        )
    normal, offset, _ = fit_plane_ransac(
        candidates, threshold=fit_threshold, iterations=iterations, seed=seed
    )
    dist = np.abs(sample.points.astype(np.float64) @ normal + offset)
    plane = [*map(float, normal), offset]
    return _subset(sample, dist >= cut_distance, background_plane=plane)


def _radius_edges(
    points: np.ndarray, radius: float, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j) within ``radius``: at once when they fit PAIR_BUDGET, else in chunks.

    ``counts`` are the neighbour counts of the points (themselves included); their sum bounds the
    number of pairs. ``query_pairs`` is the fast path; the chunked dual-tree path bounds memory.
    """
    tree = cKDTree(points)
    if counts.sum() <= 2 * PAIR_BUDGET:
        pairs = tree.query_pairs(radius, output_type="ndarray").astype(np.int64)
        return pairs[:, 0], pairs[:, 1]
    bounds = np.searchsorted(np.cumsum(counts), np.arange(PAIR_BUDGET, counts.sum(), PAIR_BUDGET))
    rows, cols = [], []
    for start, stop in zip([0, *bounds], [*bounds, len(points)]):  # chunks of points, not points
        if stop <= start:
            continue
        chunk = cKDTree(points[start:stop])
        pairs = chunk.sparse_distance_matrix(tree, radius, output_type="ndarray")
        rows.append(pairs["i"].astype(np.int64) + start)
        cols.append(pairs["j"].astype(np.int64))
    return np.concatenate(rows), np.concatenate(cols)


def cluster_points(points: np.ndarray, *, radius: float, min_points: int) -> np.ndarray:
    """DBSCAN cluster id of each point (N,), -1 for noise.

    Core points have >= ``min_points`` neighbours within ``radius`` (themselves included); clusters
    are connected components of core points linked within ``radius``; every other point within
    ``radius`` of a core point joins the cluster of its nearest core point.
    """
    pts = np.asarray(points, dtype=np.float64)
    labels = np.full(len(pts), -1, dtype=np.int64)
    if not len(pts):
        return labels
    counts = cKDTree(pts).query_ball_point(pts, radius, return_length=True)
    core = np.flatnonzero(counts >= min_points)
    if not len(core):
        return labels
    rows, cols = _radius_edges(pts[core], radius, counts[core])
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(core), len(core))
    )
    _, labels[core] = connected_components(graph, directed=False)
    others = np.flatnonzero(labels < 0)
    if len(others):
        bound = np.nextafter(radius, np.inf)  # query's bound is strict, DBSCAN's is not
        dist, nearest = cKDTree(pts[core]).query(pts[others], distance_upper_bound=bound)
        hit = np.isfinite(dist)
        labels[others[hit]] = labels[core[nearest[hit]]]
    return labels


def keep_largest_cluster(
    sample: PointCloudSample,
    *,
    radius: float = CLUSTER_RADIUS,
    min_points: int = CLUSTER_MIN_POINTS,
) -> PointCloudSample:
    """Keep the largest DBSCAN cluster (BTF step 6); units follow the data (metres for MVTec).

    When no point has ``min_points`` neighbours there is no cluster; the sample is returned
    unchanged and a warning is logged.
    """
    labels = cluster_points(sample.points, radius=radius, min_points=min_points)
    if not (labels >= 0).any():
        logger.warning(
            "%s: no DBSCAN cluster (radius %g, min_points %d); sample kept whole",
            sample.sample_id or "sample",
            radius,
            min_points,
        )
        return _subset(sample, np.ones(sample.num_points, dtype=bool))
    biggest = int(np.argmax(np.bincount(labels[labels >= 0])))
    return _subset(sample, labels == biggest)


def grid_resize_index(grid_shape: tuple[int, int], size: int) -> np.ndarray:
    """Source flat index (size * size,) of each cell of a ``size`` x ``size`` nearest resize.

    The legacy nearest rule of ``torch.nn.functional.interpolate(mode="nearest")`` used by
    BTF/M3DM/PointAD (DATASETS.md §1.5): source = min(floor(dst * (in / out)), in - 1), in float32.
    """
    h, w = (int(v) for v in grid_shape)
    if isinstance(size, bool) or int(size) != size or size < 1 or h < 1 or w < 1:
        raise ValueError(
            f"size must be a positive integer and grid_shape positive, got {size!r}, {grid_shape!r}"
        )
    rows, cols = _legacy_nearest(h, int(size)), _legacy_nearest(w, int(size))
    return (rows[:, None] * w + cols[None, :]).reshape(-1)


def _legacy_nearest(n_in: int, n_out: int) -> np.ndarray:
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, n_in - 1)


def resize_grid(sample: PointCloudSample, size: int) -> PointCloudSample:
    """Resample an organised sample onto a ``size`` x ``size`` grid (legacy nearest).

    Every target cell takes the point of its source cell (points, colours and labels alike);
    cells whose source is missing stay missing. Upsampling repeats points.

    Raises:
        ValueError: ``sample`` is not organised, or ``size`` < 1.
    """
    if not sample.is_organised:
        raise ValueError(
            f"resize_grid needs an organised sample (grid_shape), got {sample.sample_id!r} without"
        )
    source = grid_resize_index(sample.grid_shape, size)
    h, w = sample.grid_shape
    lookup = np.full(h * w, -1, dtype=np.int64)
    lookup[sample.grid_index] = np.arange(sample.num_points)
    rows = lookup[source]
    cells = np.flatnonzero(rows >= 0)
    resized = _subset(sample, rows[cells], resized_from=(h, w))
    return dataclasses.replace(resized, grid_shape=(int(size), int(size)), grid_index=cells)


def normalise_to_unit_sphere(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre ``points`` (N, 3) on their centroid and scale them into the unit ball.

    Returns:
        float32 (N, 3) normalised points, float32 (3,) centre, and the scale (largest distance from
        the centre; 1.0 when all points coincide), so ``points ~= normalised * scale + centre``.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = check_shape(pts, "N 3", name="points")["N"]
    if n == 0:
        raise ValueError("points must hold at least one point, got 0")
    centre = pts.mean(axis=0)
    scale = float(np.linalg.norm(pts - centre, axis=1).max())
    scale = scale if scale > 0 else 1.0
    return ((pts - centre) / scale).astype(np.float32), centre.astype(np.float32), scale
