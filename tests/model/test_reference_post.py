"""Reference-style resampling and post-processing (REFERENCE.md §1 and §3)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from align3d_ad.data import PointCloudSample
from align3d_ad.data.reference import farthest_point_indices, reference_resample
from align3d_ad.model.head import ALIGNED, RENDERING, fuse_branches
from align3d_ad.model.reference_post import (
    _seen_rows,
    grid_maps,
    lift_resampled,
    nearest_point_maps,
)
from align3d_ad.render import RenderSettings, get_view_preset, render_batch


def test_organised_7x5_grid_resized_to_336_picks_floor_cells():
    xyz = np.zeros((7, 5, 3), dtype=np.float32)
    rows, cols = np.mgrid[0:7, 0:5]
    xyz[..., 0], xyz[..., 1], xyz[..., 2] = rows, cols, 1.0
    xyz[3, 2] = 0  # a missing cell stays missing
    sample = PointCloudSample.from_grid(xyz, label=0)
    out, src = reference_resample(sample, 336)
    assert out.grid_shape == (336, 336)
    r, c = np.divmod(out.grid_index, 336)
    np.testing.assert_array_equal(out.points[:, 0], r * 7 // 336)
    np.testing.assert_array_equal(out.points[:, 1], c * 5 // 336)
    missing = (r * 7 // 336 == 3) & (c * 5 // 336 == 2)
    assert not missing.any() and out.num_points == 336 * 336 - 48 * 67
    np.testing.assert_array_equal(sample.points[src], out.points)


def test_small_cloud_keeps_every_point_and_becomes_exactly_112896():
    rng = np.random.default_rng(0)
    pts = rng.random((50_000, 3)).astype(np.float32)
    labels = pts[:, 0] > 0.9
    sample = PointCloudSample(pts, point_labels=labels, label=1)
    out, src = reference_resample(sample, 336, seed=1)
    assert out.num_points == 112_896
    np.testing.assert_array_equal(out.points[:50_000], pts)
    np.testing.assert_array_equal(src[:50_000], np.arange(50_000))
    # a new point lies on an edge from its source and is labelled like it (its nearer end)
    np.testing.assert_array_equal(out.point_labels, labels[src])
    gap = np.linalg.norm(out.points[50_000:] - pts[src[50_000:]], axis=1)
    assert gap.max() < 0.05  # within 75 % of a 3-nearest-neighbour edge of a 50k-point cube
    again, _ = reference_resample(sample, 336, seed=1)
    np.testing.assert_array_equal(again.points, out.points)


def test_large_cloud_becomes_112896_by_seeded_farthest_point_sampling():
    rng = np.random.default_rng(1)
    pts = rng.random((200_000, 3)).astype(np.float32)
    sample = PointCloudSample(pts, point_labels=pts[:, 2] > 0.5, label=1)
    start = time.perf_counter()
    out, src = reference_resample(sample, 336, seed=7)
    assert time.perf_counter() - start < 30
    assert out.num_points == 112_896 and len(np.unique(src)) == 112_896
    np.testing.assert_array_equal(out.points, pts[src])
    np.testing.assert_array_equal(out.point_labels, pts[src, 2] > 0.5)
    np.testing.assert_array_equal(reference_resample(sample, 336, seed=7)[1], src)


def test_farthest_point_sampling_is_exact():
    pts = np.random.default_rng(2).random((1500, 3)).astype(np.float32)
    idx = farthest_point_indices(pts, 200, seed=3)
    chosen, dist = [idx[0]], np.linalg.norm(pts - pts[idx[0]], axis=1)
    for _ in range(199):  # the textbook loop from the same start
        j = int(dist.argmax())
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[j], axis=1))
    np.testing.assert_array_equal(idx, chosen)


def test_unseen_points_copy_the_visibility_of_the_nearest_seen_index():
    vis = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.bool)
    out = _seen_rows(vis)
    # rows 0 -> 1; 2 -> 1 (nearer); 3 -> 1 (tie: the earlier); 4 -> 5; 6 -> 5
    expected = vis[torch.tensor([1, 1, 1, 1, 5, 5, 5])]
    assert torch.equal(out, expected)


def test_maps_are_read_at_the_truncated_pixel_and_averaged_over_visible_views():
    rng = np.random.default_rng(3)
    pts = torch.from_numpy(rng.normal(size=(400, 3)).astype(np.float32))
    preset = get_view_preset("mvtec3d")
    rendering = render_batch([pts], preset, RenderSettings(image_size=48))
    v = preset.num_views
    grid = torch.from_numpy(rng.random((1, v, 2, 4, 4)).astype(np.float32))
    got = nearest_point_maps(grid, rendering)[0]
    up = torch.nn.functional.interpolate(grid[0], size=(48, 48), mode="bilinear",
                                         align_corners=False)  # fmt: skip
    xy = rendering.pixel_coords.numpy()
    col, row = np.clip(np.trunc(xy[..., 0]), 0, 47).astype(int), np.clip(np.trunc(xy[..., 1]), 0, 47).astype(int)
    vis = _seen_rows(rendering.visible).numpy()
    read = up.numpy()[np.arange(v)[None, :], :, row, col]  # (N, V, C)
    expected = (read * vis[..., None]).sum(1) / vis.sum(1, keepdims=True)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_grid_blur_covers_the_whole_grid_and_the_object_score_takes_its_max():
    scores = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.25, 0.5]])
    cells = np.array([0, 45, 399])
    blurred = grid_maps(scores, cells, 20, 4.0)
    flat = np.zeros((2, 400))
    flat[:, cells] = scores.numpy().T
    expected = np.stack([gaussian_filter(m.reshape(20, 20), 4.0, mode="reflect", truncate=4.0)
                         for m in flat])  # fmt: skip
    np.testing.assert_allclose(blurred.numpy(), expected, atol=1e-6)
    assert (blurred[0].numpy() > 0).mean() > 0.5  # background cells keep blurred scores
    grids = {ALIGNED: blurred[0], RENDERING: blurred[1]}
    glob = {ALIGNED: torch.tensor(0.2), RENDERING: torch.tensor(0.6)}
    point, obj = fuse_branches(grids, glob, alpha=0.25, beta=0.75)
    np.testing.assert_allclose(point.numpy(), 0.75 * expected[0] + 0.25 * expected[1], atol=1e-6)
    assert float(obj) == pytest.approx(
        (0.25 * expected[0] + 0.75 * expected[1]).max() + 0.25 * 0.2 + 0.75 * 0.6, abs=1e-6
    )


def test_lift_takes_the_resampled_copy_or_the_nearest_resampled_point():
    class _Prep:
        sample = PointCloudSample(np.array([[0, 0, 0], [0.8, 0, 0], [2, 0, 0], [9, 0, 0]], np.float32))

    rows = np.array([2, 0, 2])  # point 2 resampled twice (first copy wins), 1 and 3 not at all
    lifted = lift_resampled(np.array([5.0, 7.0, 6.0]), rows, _Prep())
    np.testing.assert_array_equal(lifted, [7.0, 7.0, 5.0, 5.0])
