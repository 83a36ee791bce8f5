"""Z-order permutation of the neighbour searches."""

from __future__ import annotations

import numpy as np

from align3d_ad.render.neighbours import inverse_permutation, spatial_order


def test_spatial_order_is_a_permutation_that_keeps_neighbours_close():
    rng = np.random.default_rng(0)
    pts = rng.random((20_000, 3)).astype(np.float32)
    order = spatial_order(pts)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(len(pts)))
    step = np.linalg.norm(np.diff(pts[order], axis=0), axis=1)
    assert np.median(step) < 0.1 * np.median(np.linalg.norm(np.diff(pts, axis=0), axis=1))
    np.testing.assert_array_equal(spatial_order(pts), order)  # deterministic
    rank = inverse_permutation(order)
    np.testing.assert_array_equal(rank[order], np.arange(len(pts)))


def test_spatial_order_of_tiny_and_degenerate_clouds():
    assert spatial_order(np.zeros((0, 3))).tolist() == []
    assert spatial_order(np.ones((1, 3))).tolist() == [0]
    assert spatial_order(np.ones((4, 3))).tolist() == [0, 1, 2, 3]  # one cell: input order
    line = np.array([[3.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [0.0, 0, 0]])
    assert spatial_order(line).tolist() == [3, 1, 2, 0]
