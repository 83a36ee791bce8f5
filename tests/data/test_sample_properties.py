"""Property tests of the central sample type (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from align3d_ad.data import PointCloudSample, valid_point_mask
from align3d_ad.evaluate import point_auroc

grids = st.tuples(st.integers(1, 7), st.integers(1, 9)).flatmap(
    lambda hw: arrays(
        np.float32, (*hw, 3),
        elements=st.sampled_from([0.0, 1.5, -2.0, 0.25, np.nan, np.inf]),
    )
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(grids)
def test_from_grid_drops_invalid_cells_and_to_grid_restores_the_rest(xyz):
    mask = (np.arange(xyz.shape[0] * xyz.shape[1]).reshape(xyz.shape[:2]) % 3) == 0
    sample = PointCloudSample.from_grid(xyz, mask=mask)
    valid = valid_point_mask(xyz)
    assert sample.num_points == int(valid.sum())
    assert np.isfinite(sample.points).all() and (sample.points != 0).any(axis=1).all()
    back = sample.to_grid(sample.points)
    np.testing.assert_array_equal(back[valid], xyz[valid])
    assert (back[~valid] == 0).all()
    np.testing.assert_array_equal(sample.to_grid(sample.point_labels, fill=False), mask & valid)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.bool_, st.integers(2, 40)),
    st.data(),
)
def test_point_auroc_equals_pair_counting(labels, data):
    scores = data.draw(arrays(np.float64, labels.shape, elements=st.integers(0, 5).map(float)))
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert abs(point_auroc(labels, scores) - pairs / (len(pos) * len(neg))) < 1e-12
