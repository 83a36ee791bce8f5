"""Preparing samples for rendering and lifting scores back to the sample as read."""

from __future__ import annotations

import numpy as np

from align3d_ad.config import DataConfig
from align3d_ad.data import PointCloudSample, prepare_sample


def _scan(h: int = 60, w: int = 80) -> tuple[PointCloudSample, np.ndarray, np.ndarray]:
    """Tilted plane (z ~ 0.5 m) with a 10 mm block and an isolated 3 x 3 speck, 0.5 mm pitch."""
    r, c = np.mgrid[0:h, 0:w].astype(np.float32)
    xyz = np.stack([(c - w / 2) * 5e-4, (r - h / 2) * 5e-4, 0.5 + 2e-4 * c], -1)
    block = (r >= 20) & (r < 40) & (c >= 30) & (c < 55)
    speck = (r >= 5) & (r < 8) & (c >= 5) & (c < 8)
    xyz[..., 2] -= 0.01 * (block | speck)
    xyz[25, 40] = 0  # a missing point inside the object
    return PointCloudSample.from_grid(xyz.astype(np.float32), sample_id="scan"), block, speck


def test_prepare_keeps_only_the_object_of_an_organised_scan():
    sample, block, speck = _scan()
    prep = prepare_sample(sample, DataConfig())
    kept = np.zeros(sample.grid_shape, dtype=bool).reshape(-1)
    kept[prep.sample.grid_index] = True
    expected = block.copy()
    expected[25, 40] = False
    np.testing.assert_array_equal(kept.reshape(sample.grid_shape), expected)
    assert not (kept.reshape(sample.grid_shape) & speck).any()
    np.testing.assert_array_equal(sample.grid_index[prep.foreground], prep.sample.grid_index)


def test_lift_scores_background_zero_and_subsampled_points_take_nearest():
    sample, _, _ = _scan()
    prep = prepare_sample(sample, DataConfig(max_points=100), seed=1)
    assert prep.sample.num_points == 100 and len(prep.foreground) > 100
    scores = prep.sample.points[:, 0].astype(np.float64)  # a score that varies in x
    lifted = prep.lift(scores)
    background = np.ones(sample.num_points, dtype=bool)
    background[prep.foreground] = False
    assert (lifted[background] == 0).all()
    np.testing.assert_array_equal(lifted[prep.foreground][prep.rendered], scores)
    fg = sample.points[prep.foreground]
    nearest = np.argmin(((fg[:, None, :] - prep.sample.points[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(lifted[prep.foreground], scores[nearest])


def test_unorganised_clouds_are_rendered_whole():
    points = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    prep = prepare_sample(PointCloudSample(points), DataConfig())
    assert prep.sample.num_points == 500
    np.testing.assert_array_equal(prep.lift(np.arange(500.0)), np.arange(500.0))
