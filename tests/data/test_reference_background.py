"""The reference's Eyecandies background box (REFERENCE.md §1, data/reference_background.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align3d_ad.data import PointCloudSample
from align3d_ad.data.prepare import PreparedSample
from align3d_ad.data.reference import reference_resample
from align3d_ad.data.reference_background import (
    eyecandies_background_keep,
    reference_prepared,
)
from align3d_ad.errors import DatasetFormatError

START = np.array([0.0, 0.4, 1.2])  # the bottom anchor's (y, z) in the tooling frame
# (u, v, w) in the levelled frame: a point just outside (+) and just inside (-) each face
PROBES = {
    "above_belt": ((0.0, -0.019, 1.0), False), "below_belt": ((0.0, -0.021, 1.0), True),
    "beyond_far": ((0.0, -0.3, 1.801), False), "before_far": ((0.0, -0.3, 1.799), True),
    "beyond_right": ((1.001, -0.3, 1.0), False), "before_right": ((0.999, -0.3, 1.0), True),
    "beyond_left": ((-1.001, -0.3, 1.0), False), "before_left": ((-0.999, -0.3, 1.0), True),
    "behind_start": ((0.0, -0.3, -0.5), True),  # the box has no near face
}  # fmt: skip


def _tooling(uvw: np.ndarray, theta: float) -> np.ndarray:
    """Levelled (u, v, w) -> tooling points: (u, (y, z) = START + R_x(theta)^T (v, w))."""
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    v, w = uvw[:, 1], uvw[:, 2]
    y = START[1] + c * v + s * w  # R^T = [[c, s], [-s, c]] on (y, z)
    z = START[2] - s * v + c * w
    return np.stack([uvw[:, 0], y, z], axis=1)


def _expected(uvw: np.ndarray) -> np.ndarray:
    return (uvw[:, 1] <= -0.02) & (uvw[:, 2] <= 1.8) & (np.abs(uvw[:, 0]) <= 1.0)


def _levelled_grid(h: int, w: int, anchors: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random (u, v, w) per cell; belt anchors at ``anchors`` (top, bottom flat cells)."""
    rng = np.random.default_rng(seed)
    uvw = np.stack([rng.uniform(-1.5, 1.5, h * w), rng.uniform(-0.4, 0.2, h * w),
                    rng.uniform(-0.5, 2.5, h * w)], axis=1)  # fmt: skip
    uvw[anchors[0]] = (-0.2, 0.0, 3.0)  # top of the belt: the +w direction
    uvw[anchors[1]] = (0.3, 0.0, 0.0)  # bottom of the belt: the levelled origin
    return uvw


def _sample(points: np.ndarray, h: int, w: int, turned: bool = False, **meta) -> PointCloudSample:
    pts = points * np.array([1.0, -1.0, -1.0]) if turned else points
    return PointCloudSample.from_grid(
        pts.reshape(h, w, 3).astype(np.float32), label=0, category="Bagel", sample_id="test/0",
        meta={"dataset": "eyecandies", "turned_up": turned, **meta},
    )  # fmt: skip


def _prepared(sample: PointCloudSample) -> PreparedSample:
    rows = np.arange(sample.num_points)
    return PreparedSample(sample=sample, original=sample, foreground=rows, rendered=rows)


@pytest.mark.parametrize("theta,turned", [(0.0, False), (30.0, False), (-120.0, True)])
def test_box_drops_exactly_the_points_outside_each_face_of_the_levelled_belt(theta, turned):
    size = 336  # native 336: the resize is the identity, anchors at flat 256 and -256
    uvw = _levelled_grid(size, size, (256, size * size - 256))
    probe_cells = np.arange(1000, 1000 + len(PROBES))
    uvw[probe_cells] = [p for p, _ in PROBES.values()]
    sample = _sample(_tooling(uvw, theta), size, size, turned=turned)
    before = sample.points.copy()
    keep = eyecandies_background_keep(sample, size)
    np.testing.assert_array_equal(keep, _expected(uvw))
    assert keep[probe_cells].tolist() == [kept for _, kept in PROBES.values()]
    assert 0.2 < keep.mean() < 0.5 and not keep[[256, size * size - 256]].any()  # belt dropped
    out = reference_prepared(_prepared(sample), size)
    np.testing.assert_array_equal(out.foreground, np.flatnonzero(_expected(uvw)))
    # the kept points are not moved (bit for bit), the input is untouched
    np.testing.assert_array_equal(out.sample.points, before[out.foreground])
    np.testing.assert_array_equal(sample.points, before)
    np.testing.assert_array_equal(out.sample.grid_index, out.foreground)
    resized, _ = reference_resample(out.sample, size)
    np.testing.assert_array_equal(resized.grid_index, np.flatnonzero(_expected(uvw)))


def test_box_is_applied_after_the_336_resize_with_the_resized_grids_anchors():
    n = 512
    # the 336 grid's flat cells 256 = (0, 256) and -256 = (335, 80) read native cells
    # (floor(0 * 512/336), floor(256 * 512/336)) = (0, 390) and (510, 121)
    top, bottom = 0 * n + 390, 510 * n + 121
    uvw = _levelled_grid(n, n, (top, bottom), seed=1)
    uvw[256] = (0.0, -0.1, 2.0)  # the native grid's own flat 256 / -256: object points that a
    uvw[n * n - 256] = (0.0, -0.35, 0.2)  # box fitted before the resize would level the belt by
    sample = _sample(_tooling(uvw, 20.0), n, n)
    src = np.floor(np.arange(336) * (n / 336)).astype(int)
    cells = (src[:, None] * n + src[None, :]).reshape(-1)  # native cell of each 336 cell
    expected = np.flatnonzero(_expected(uvw)[cells])
    out = reference_prepared(_prepared(sample), 336)
    resized, rows = reference_resample(out.sample, 336)
    np.testing.assert_array_equal(resized.grid_index, expected)
    np.testing.assert_array_equal(resized.points, sample.points[cells[expected]])
    # the reference's own order, resize then the box on the 336 grid, keeps the same cells
    whole, _ = reference_resample(sample, 336)
    np.testing.assert_array_equal(whole.grid_index[eyecandies_background_keep(whole, 336)], expected)
    # levelling through the native grid's flat 256 / -256 instead would keep other points
    assert not np.array_equal(eyecandies_background_keep(sample, n), _expected(uvw))


def test_other_datasets_keep_their_own_background_removal():
    uvw = _levelled_grid(24, 24, (256, 24 * 24 - 256))
    sample = _sample(_tooling(uvw, 0.0), 24, 24, dataset="mvtec3d")
    prepared = _prepared(sample)
    assert reference_prepared(prepared, 24) is prepared


def test_missing_anchor_degenerate_belt_and_empty_box_name_the_file():
    size = 24
    uvw = _levelled_grid(size, size, (256, size * size - 256))
    pts = _tooling(uvw, 10.0)
    pts[256] = 0.0  # a missing cell (all zero)
    sample = _sample(pts, size, size)
    sample.source = "Bagel/test_public/data/000_depth.png"
    with pytest.raises(DatasetFormatError, match=r"000_depth\.png: belt anchor cell .*\(10, 16\)"):
        reference_prepared(_prepared(sample), size)
    pts = _tooling(uvw, 10.0)
    pts[256, 1:] = pts[size * size - 256, 1:]  # both anchors at one (y, z)
    with pytest.raises(DatasetFormatError, match="share their"):
        eyecandies_background_keep(_sample(pts, size, size), size)
    flat = _tooling(uvw * [1.0, 0.0, 1.0], 10.0)  # every point on the belt: nothing kept
    with pytest.raises(DatasetFormatError, match=r"box keeps 0 of 576 points"):
        reference_prepared(_prepared(_sample(flat, size, size)), size)
