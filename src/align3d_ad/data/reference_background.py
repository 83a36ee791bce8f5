"""The reference's Eyecandies background rule (REFERENCE.md §1; PointAD ``multiview_eyecandies.py``).

The reference reads the official tooling's 512 x 512 cloud (our reader's ``pose: world`` frame),
nearest-resizes it to S x S (S = 336) and only then removes the background, on the flattened grid:

1. Two belt anchors, the grid cells at flat index 256 and S² - 256 (at S = 336: row 0, column 256
   and row 335, column 80). The belt is levelled by the rotation about x that maps the (y, z) step
   from the second anchor to the first onto +z: with (dy, dz) that step, c = dz / n, s = dy / n,
   n = |(dy, dz)|, R = [[1, 0, 0], [0, c, -s], [0, s, c]], q = R (p - (0, y_a, z_a)) where
   (y_a, z_a) is the second anchor's. So the belt through both anchors has q_y = 0, and q_z runs
   along it from the second anchor.
2. A point is background when q_y > -0.02 (on or above the levelled belt line, on the side away
   from the object), q_z > 1.8 (too far along the belt) or |q_x| > 1 (q_x = x).
3. The kept points are rotated back, so none of them moves: the rule only chooses cells. The axis
   swap and scale that follow are the render's (``render.style: reference``).

The levelling is fitted to the anchors, so the rule does not change when the whole cloud is turned
about x or shifted in y and z: a cloud the reader turned up (``up: -z|auto``, 180° about x) keeps
the same cells. It does depend on the x axis and the units: those of ``pose: world`` (the tooling's
frame, the reader's default), in which the box sizes are set.

Because the test is per point and the anchors are cells of the resized grid, applying it to the
native grid with the anchors taken at the native cells the resize reads gives exactly the cells the
reference keeps after the resize (:func:`reference_prepared` does this, so the native points keep
their scores and the resize of :func:`~.reference.reference_resample` follows as before).
"""

from __future__ import annotations

import numpy as np

from ..config import MIN_CLOUD_POINTS
from ..errors import DatasetFormatError
from .prepare import PreparedSample, _take, _where
from .preprocess import grid_resize_index
from .sample import PointCloudSample

#: Flat indices of the two belt anchors on the resized grid (the second one counted from the end).
BELT_ANCHORS = (256, -256)
#: The box in the levelled frame: q_y above this, q_z beyond the next, |q_x| beyond the last drop.
BELT_MARGIN = -0.02
BELT_LENGTH = 1.8
BELT_HALF_WIDTH = 1.0


def level_belt(points: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """(N, 3) float64 points in the levelled frame of the belt through anchors ``top``, ``bottom``.

    Raises:
        ValueError: the anchors have the same (y, z), so no rotation levels the belt.
    """
    dy, dz = float(top[1]) - float(bottom[1]), float(top[2]) - float(bottom[2])
    norm = float(np.hypot(dy, dz))
    if norm == 0.0:
        raise ValueError("the belt anchors share their (y, z); the belt cannot be levelled")
    c, s = dz / norm, dy / norm
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    start = np.array([0.0, float(bottom[1]), float(bottom[2])])
    return (np.asarray(points, dtype=np.float64) - start) @ rot.T


def belt_box_keep(levelled: np.ndarray) -> np.ndarray:
    """Bool (N,): the points of a levelled cloud (N, 3) inside the reference's box."""
    q = np.asarray(levelled)
    return (q[:, 1] <= BELT_MARGIN) & (q[:, 2] <= BELT_LENGTH) & (np.abs(q[:, 0]) <= BELT_HALF_WIDTH)


def eyecandies_background_keep(sample: PointCloudSample, size: int) -> np.ndarray:
    """Bool (N,): the points of an organised Eyecandies sample the reference keeps.

    The anchors are the native cells that the ``size`` x ``size`` nearest resize reads for its flat
    cells 256 and size² - 256 (module docstring).

    Raises:
        DatasetFormatError: naming the sample's file, when it is not organised, an anchor cell is
            missing, or the anchors cannot level the belt.
    """
    where = _where(sample)
    if not sample.is_organised:
        raise DatasetFormatError(where, "the Eyecandies background rule needs an organised grid")
    if int(size) ** 2 <= BELT_ANCHORS[0]:
        raise DatasetFormatError(where, f"grid side {size} is too small for the belt anchors")
    h, w = sample.grid_shape
    cells = grid_resize_index(sample.grid_shape, int(size))[list(BELT_ANCHORS)]
    lookup = np.full(h * w, -1, dtype=np.int64)
    lookup[sample.grid_index] = np.arange(sample.num_points)
    rows = lookup[cells]
    if (rows < 0).any():
        missing = ", ".join(f"({c // w}, {c % w})" for c in cells[rows < 0])
        raise DatasetFormatError(
            where, f"belt anchor cell (row, column) {missing} of the {h} x {w} grid has no point; "
            "the reference background rule levels the belt through it",
        )  # fmt: skip
    pts = np.asarray(sample.coordinates(), dtype=np.float64)  # the box is in absolute coordinates
    try:
        levelled = level_belt(pts, pts[rows[0]], pts[rows[1]])
    except ValueError as err:
        raise DatasetFormatError(where, str(err)) from None
    return belt_box_keep(levelled)


def is_eyecandies(sample: PointCloudSample) -> bool:
    """Whether the sample was read by the Eyecandies reader (its background rule applies)."""
    return sample.is_organised and sample.meta.get("dataset") == "eyecandies"


def reference_prepared(prepared: PreparedSample, size: int) -> PreparedSample:
    """``prepared`` with the reference's background removal (REFERENCE.md §1) instead of ours.

    Eyecandies samples: every point of the sample as read that the reference's box keeps (nothing
    subsampled, nothing moved); the others score 0 when lifted back. Other samples: unchanged
    (MVTec 3D-AD's reference input is the BTF cut our preparation already makes).

    Raises:
        DatasetFormatError: naming the file, as :func:`eyecandies_background_keep`, or when the box
            keeps fewer than :data:`~align3d_ad.config.MIN_CLOUD_POINTS` points.
    """
    original = prepared.original
    if not is_eyecandies(original):
        return prepared
    foreground = np.flatnonzero(eyecandies_background_keep(original, size)).astype(np.int64)
    if len(foreground) < MIN_CLOUD_POINTS:
        raise DatasetFormatError(
            _where(original), f"the reference background box keeps {len(foreground)} of "
            f"{original.num_points} points (at least {MIN_CLOUD_POINTS} are needed); it is set in "
            "the official tooling's frame and units (after levelling the belt, y > -0.02, "
            "z > 1.8 and |x| > 1 are dropped), so scans in other units lose everything",
        )  # fmt: skip
    sample = _take(original, foreground)
    rendered = np.arange(len(foreground), dtype=np.int64)
    return PreparedSample(sample, original, foreground, rendered)


__all__ = [
    "BELT_ANCHORS",
    "belt_box_keep",
    "eyecandies_background_keep",
    "is_eyecandies",
    "level_belt",
    "reference_prepared",
]
