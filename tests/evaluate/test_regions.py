"""AUPRO regions: 8-connected grid components, radius-graph point components, global ids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from align3d_ad.errors import ShapeError
from align3d_ad.evaluate import (
    default_region_radius,
    global_region_ids,
    grid_regions,
    point_regions,
)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label vectors cut the elements the same way (ids may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_grid_regions_joins_diagonal_neighbours():
    mask = np.zeros((5, 7), bool)  # non-square
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # one diagonal chain
    mask[3:5, 5:7] = True  # a block
    mask[0, 6] = True  # an isolated cell
    regions = grid_regions(mask)
    assert regions.shape == (5, 7) and regions.dtype == np.int64
    assert sorted(np.unique(regions).tolist()) == [0, 1, 2, 3]
    assert len({regions[0, 0], regions[1, 1], regions[2, 2]}) == 1
    assert np.array_equal(regions > 0, mask)
    assert ndimage.label(mask)[1] == 5  # 4-connectivity would split the chain


def test_grid_regions_accepts_uint8_masks_and_rejects_other_ranks():
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 1:3] = 255
    assert grid_regions(mask).max() == 1
    with pytest.raises(ShapeError, match=r"mask must have shape \(H, W\)"):
        grid_regions(np.zeros((2, 3, 4), bool))


def test_point_regions_two_separated_blobs():
    rng = np.random.default_rng(0)
    blob_a = rng.normal(0.0, 0.05, size=(30, 3))
    blob_b = rng.normal(0.0, 0.05, size=(25, 3)) + [3.0, 0.0, 0.0]
    normal = rng.uniform(-1, 4, size=(40, 3)) + [0.0, 5.0, 0.0]
    points = np.concatenate([blob_a, blob_b, normal]).astype(np.float32)
    labels = np.r_[np.ones(55, bool), np.zeros(40, bool)]
    regions = point_regions(points, labels, radius=0.5)
    assert regions.dtype == np.int64 and regions.shape == (95,)
    assert np.all(regions[55:] == 0)
    assert len(set(regions[:30])) == 1 and len(set(regions[30:55])) == 1
    assert regions[0] != regions[30] and sorted({regions[0], regions[30]}) == [1, 2]


def test_point_regions_chain_below_radius_is_one_region():
    points = np.c_[np.arange(50) * 0.1, np.zeros(50), np.zeros(50)]
    regions = point_regions(points, np.ones(50, bool), radius=0.15)
    assert np.all(regions == 1)
    points[25:, 0] += 0.1  # one gap of 0.2 > radius splits it
    assert np.array_equal(
        point_regions(points, np.ones(50, bool), radius=0.15), np.r_[[1] * 25, [2] * 25]
    )


def test_point_regions_normal_points_do_not_link():
    points = np.c_[np.arange(5.0), np.zeros(5), np.zeros(5)]
    labels = np.array([1, 1, 0, 1, 1])
    assert point_regions(points, labels, radius=1.5).tolist() == [1, 1, 0, 2, 2]
    assert point_regions(points, labels, radius=2.0).tolist() == [1, 1, 0, 1, 1]


def test_point_regions_default_radius_is_2_5_spacings():
    # A line with spacing 1: radius 2.5 bridges one missing sample (gap 2), not a gap of 4.
    points = np.c_[np.arange(20.0), np.zeros(20), np.zeros(20)]
    assert default_region_radius(points) == pytest.approx(2.5)
    labels = np.isin(np.arange(20), [0, 1, 2, 4, 5, 10, 11, 15, 16])
    regions = point_regions(points, labels)
    assert regions[[0, 1, 2, 4, 5]].tolist() == [1] * 5
    assert regions[[10, 11]].tolist() == [2, 2] and regions[[15, 16]].tolist() == [3, 3]
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(4)), -1).reshape(-1, 2) * 0.1
    assert default_region_radius(np.c_[grid, np.zeros(24)]) == pytest.approx(0.25)


def test_point_regions_partition_invariant_to_point_order():
    rng = np.random.default_rng(1)
    points = rng.random((200, 3))
    labels = rng.random(200) < 0.5
    regions = point_regions(points, labels, radius=0.12)
    perm = rng.permutation(200)
    permuted = point_regions(points[perm], labels[perm], radius=0.12)
    assert regions.max() > 2
    assert _same_partition(regions[perm], permuted)


def test_point_regions_no_anomaly_gives_zeros():
    assert point_regions(np.random.default_rng(0).random((10, 3)), np.zeros(10, bool)).sum() == 0


def test_point_regions_invalid_inputs_raise():
    points = np.zeros((4, 3))
    with pytest.raises(ShapeError, match="points must have shape"):
        point_regions(np.zeros((4, 2)), np.ones(4, bool))
    with pytest.raises(ShapeError, match="labels must have shape"):
        point_regions(points, np.ones(5, bool))
    with pytest.raises(ValueError, match=r"labels must be bool or 0/1, got values \[2\]"):
        point_regions(points, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="radius must be a finite number > 0, got 0"):
        point_regions(points, np.ones(4, bool), radius=0)


def test_global_region_ids_unique_across_samples():
    ids, count = global_region_ids(
        [np.array([[0, 2], [2, 5]]), np.array([2, 0, 9]), np.zeros(3, int)]
    )
    assert count == 4
    assert ids.tolist()[:4] == [0, 1, 1, 2] and ids[4] not in (0, 1, 2) and ids[5] == 0
    assert sorted(set(ids.tolist())) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="integer array"):
        global_region_ids([np.array([0.0, 1.0])])
    with pytest.raises(ValueError, match="must be >= 0, got -3"):
        global_region_ids([np.array([0, -3])])
