"""Resampling in reference style: the points the published pipeline scored (REFERENCE.md §1).

* Organised scans (MVTec 3D-AD, Eyecandies): the grid nearest-resized to ``size`` x ``size``
  (source index floor(dst * in / out), :func:`~.preprocess.resize_grid`); missing cells dropped.
* Unorganised clouds (Real3D-AD): exactly ``size``² points. Larger clouds: farthest-point sampling
  from a seeded start point (``fpsample``, exact FPS). Smaller ones keep every point, in order, and
  add points at 25 / 50 / 75 % along the edges to each point's 3 nearest neighbours (a seeded random
  subset of them; more rounds on the densified cloud when one round is not enough); a new point is
  labelled like its nearer end (the origin point for the midpoint).

:func:`reference_resample` returns the resampled sample and, per resampled point, the row of the
input it came from (its nearer end for interpolated points), so scores can be lifted back.
"""

from __future__ import annotations

import dataclasses

import fpsample
import numpy as np
from scipy.spatial import cKDTree

from .preprocess import grid_resize_index, resize_grid
from .sample import PointCloudSample

#: Side of the reference grid; unorganised clouds are resampled to its square of points.
REFERENCE_GRID = 336
#: Neighbours and edge fractions of the reference's densification.
EDGE_NEIGHBOURS = 3
EDGE_FRACTIONS = (0.25, 0.5, 0.75)


def farthest_point_indices(points: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Rows of ``points`` (N, 3) chosen by farthest-point sampling, the first one seeded."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    start = int(np.random.default_rng(seed).integers(len(pts)))
    idx = fpsample.bucket_fps_kdtree_sampling(pts, int(n), start_idx=start)
    return np.asarray(idx, dtype=np.int64)


def densify_indices(points: np.ndarray, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """New points on the edges to the 3 nearest neighbours until there are ``n`` in all.

    Returns:
        ``points`` (n, 3) float32 (the input rows first, unchanged) and ``source`` (n,) int64: the
        input row each point is labelled like (itself for the input rows).
    """
    rng = np.random.default_rng(seed)
    pts = np.asarray(points, dtype=np.float32)
    source = np.arange(len(pts), dtype=np.int64)
    while len(pts) < n:
        k = min(EDGE_NEIGHBOURS, len(pts) - 1)
        _, nb = cKDTree(pts).query(pts, k=k + 1)
        nb = nb[:, 1:].reshape(-1)  # (M * k,) neighbour of each edge
        origin = np.repeat(np.arange(len(pts)), k)
        frac = np.asarray(EDGE_FRACTIONS, dtype=np.float32)
        cand = pts[origin, None] + frac[None, :, None] * (pts[nb] - pts[origin])[:, None]
        # label of the nearer end: the origin up to the midpoint, the neighbour beyond it
        end = np.where(frac[None, :] <= 0.5, origin[:, None], nb[:, None])
        take = rng.permutation(cand.shape[0] * cand.shape[1])[: n - len(pts)]
        pts = np.concatenate([pts, cand.reshape(-1, 3)[take]])
        source = np.concatenate([source, source[end.reshape(-1)[take]]])
    return pts, source


def reference_resample(
    sample: PointCloudSample, size: int = REFERENCE_GRID, *, seed: int = 0
) -> tuple[PointCloudSample, np.ndarray]:
    """The sample as the reference scores it, and the input row of every resampled point.

    Organised samples come back organised on the ``size`` x ``size`` grid; unorganised ones as
    exactly ``size``² points (their order is the reference's pseudo-grid, row-major).
    """
    if sample.is_organised:
        h, w = sample.grid_shape
        lookup = np.full(h * w, -1, dtype=np.int64)
        lookup[sample.grid_index] = np.arange(sample.num_points)
        rows = lookup[grid_resize_index(sample.grid_shape, size)]
        return resize_grid(sample, size), rows[rows >= 0]
    target = int(size) * int(size)
    if sample.num_points >= target:
        rows = farthest_point_indices(sample.points, target, seed=seed)
        points = sample.points[rows]
    else:
        points, rows = densify_indices(sample.points, target, seed=seed)
    out = dataclasses.replace(
        sample,
        points=np.ascontiguousarray(points, dtype=np.float32),
        colors=None if sample.colors is None else sample.colors[rows],
        point_labels=None if sample.point_labels is None else sample.point_labels[rows],
        source_rows=None,
        source_index=None,
    )
    return out, rows


__all__ = [
    "REFERENCE_GRID",
    "densify_indices",
    "farthest_point_indices",
    "reference_resample",
]
