"""Rendering in reference style (REFERENCE.md §2): camera fit, projection, squares, Phong, views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from align3d_ad.data import PointCloudSample
from align3d_ad.render import back_project, get_view_preset, render_samples
from align3d_ad.render.reference import (
    REFERENCE_STYLES,
    ReferenceRenderSettings,
    _phong,
    _square_zbuffer,
    eyecandies_tooling_transform,
    fit_camera,
    focal_length,
    project_window,
    render_reference_views,
)


def test_framing_distance_focal_and_pinhole_projection():
    assert focal_length(1024) == pytest.approx(886.81, abs=0.01)
    assert focal_length(1036) == pytest.approx(897.20, abs=0.01)
    box = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 1.0, 0.5], [1.0, 0.2, 0.1]]], dtype=torch.float64)
    centre, distance, extent = fit_camera(box)
    assert float(extent[0]) == 2.0
    assert float(distance[0]) == pytest.approx(1.2124 * 2.0, abs=1e-4)
    pts = torch.tensor([[[1.0, 0.5, 0.25], [1.3, 0.1, 0.5], [0.2, 0.9, 0.0]]], dtype=torch.float64)
    uv, depth = project_window(pts, centre, distance, 1024)
    f, d = focal_length(1024), float(distance[0])
    assert uv[0, 0].tolist() == pytest.approx([511.5, 511.5])  # the box centre: W/2 - 0.5
    for k in (1, 2):
        x, y, z = (pts[0, k] - centre[0]).tolist()
        assert uv[0, k].tolist() == pytest.approx([f * x / (d - z) + 511.5, -f * y / (d - z) + 511.5])
        assert float(depth[0, k]) == pytest.approx(d - z)


@pytest.mark.parametrize("size", [5, 6, 7, 12])
def test_points_are_squares_of_point_size_window_pixels(size):
    uv = torch.tensor([[[20.3, 30.0], [22.0, 31.0]]], dtype=torch.float64)
    depth = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    win = _square_zbuffer(uv, depth, size, 64)[0]
    first = (win == 0).nonzero()
    cols, rows = first[:, 1], first[:, 0]
    # pixel centres within the square [u - s/2, u + s/2): s columns and s rows
    assert len(first) == size * size
    assert int(cols.min()) == math.ceil(20.3 - size / 2) and int(rows.min()) == math.ceil(30 - size / 2)
    both = ((win >= 0).sum()).item()
    assert (win == 0).sum() == size * size and both > size * size  # the nearer square is whole


def test_phong_headlights_saturate_facing_points_and_light_both_sides_alike():
    rel = torch.zeros(1, 4, 3, dtype=torch.float64)
    t = math.radians(60)
    normals = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [math.sin(t), 0.0, math.cos(t)],
                             [-math.sin(t), 0.0, -math.cos(t)]]], dtype=torch.float64)  # fmt: skip
    grey = _phong(rel, normals, torch.tensor([1.2124]), torch.tensor([1.0]))
    # facing either way: 0.7 * 0.66 * 2 + 0.2 * 2 (specular ignores the normal's sign) > 1;
    # 60 degrees off: 0.7 * 0.66 * 2 * cos 60, the highlight (0.5^100) gone, same for -n
    assert grey[0].tolist() == pytest.approx([1.0, 1.0, 0.462, 0.462], abs=1e-9)


def _cube(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-1, 1, n)
    a, b = np.meshgrid(g, g)
    a, b = a.ravel(), b.ravel()
    faces = [np.stack(v, 1) for v in ((a, b, np.ones_like(a)), (a, b, -np.ones_like(a)),
                                      (a, np.ones_like(a), b), (a, -np.ones_like(a), b),
                                      (np.ones_like(a), a, b), (-np.ones_like(a), a, b))]  # fmt: skip
    face = np.repeat(np.arange(6), len(a))
    return np.concatenate(faces).astype(np.float32), face


def test_real3d_view_4_sees_the_180_degree_flipped_cloud_head_on():
    pts, face = _cube(120)
    colours = np.eye(3, dtype=np.float32)[np.minimum(face, 2)]  # z=+1 red, z=-1 green, rest blue
    preset = get_view_preset("real3d")
    assert preset.labels[4] == "x0"
    views = render_reference_views(torch.from_numpy(pts), torch.from_numpy(preset.rotations[4:5].copy()),
                                   REFERENCE_STYLES["real3d"], ReferenceRenderSettings(),
                                   colors=torch.from_numpy(colours))  # fmt: skip
    centre = views.color_images[0, :, 118:218, 118:218].mean(dim=(1, 2))
    # diag(1, -1, -1): the z = -1 face (green) turns to the camera, +y ends at the image bottom
    assert float(centre[1]) > 0.99 and float(centre[0]) < 0.01
    assert float(views.pixel_coords[face == 2, 0, 1].mean()) > 200 > float(views.pixel_coords[face == 3, 0, 1].mean())


def test_eyecandies_tooling_transform_maps_the_axes_as_stated():
    t = eyecandies_tooling_transform()
    c = math.sqrt(0.5)
    # (x, y, z) -> 0.1 (x, -z, y), then 45 degrees about x
    np.testing.assert_allclose(t @ [1, 0, 0], [0.1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(t @ [0, 1, 0], [0, -0.1 * c, 0.1 * c], atol=1e-12)
    np.testing.assert_allclose(t @ [0, 0, 1], [0, -0.1 * c, -0.1 * c], atol=1e-12)
    assert np.linalg.det(t / 0.1) == pytest.approx(1.0)


def test_visibility_is_a_single_winner_per_336_pixel_and_maps_back_project():
    pts, _ = _cube(40)
    sample = PointCloudSample(pts, point_labels=pts[:, 0] > 0.8, label=1, category="cookie")
    rendering = render_samples([sample], "mvtec3d", ReferenceRenderSettings())
    assert rendering.images.shape == (1, 9, 3, 336, 336) and rendering.gt_masks.any()
    ij = rendering.pixel_coords.to(torch.int64).clamp(0, 335)
    for v in range(9):
        vis = rendering.visible[:, v]
        pix = ij[vis, v, 1] * 336 + ij[vis, v, 0]
        assert len(torch.unique(pix)) == int(vis.sum())  # one visible point per pixel
        hit = rendering.index_map[0, v].reshape(-1)[pix]
        assert torch.equal(hit, vis.nonzero().squeeze(1))
    grey = rendering.images[0, :, 0]
    assert 0.6 < float(grey[grey < 1].mean()) < 0.95 and float(grey.max()) == 1.0
    maps = torch.rand(1, 9, 2, 24, 24)
    assert back_project(maps, rendering)[0].shape == (len(pts), 2)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 7, 8, 12])
def test_trailing_min_equals_the_window_minimum(size):
    from align3d_ad.render.reference import _trailing_min

    x = torch.randint(0, 1000, (2, 5, 30))
    got = _trailing_min(x, size, 2)
    expected = torch.stack([x[..., max(0, j - size + 1) : j + 1].amin(-1) for j in range(30)], -1)
    assert torch.equal(got, expected)


def test_normals_are_the_smallest_eigenvector_with_the_solvers_sign():
    from align3d_ad.render.reference import _robust_smallest_eigenvector, estimate_normals

    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 3, 3))
    cov = a @ a.transpose(0, 2, 1)
    got = _robust_smallest_eigenvector(cov)
    _, vec = np.linalg.eigh(cov)
    np.testing.assert_allclose(np.abs((got * vec[..., 0]).sum(1)), 1.0, atol=1e-8)
    # an axis-aligned flat patch: diagonal covariance, the solver returns +z
    g = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    flat = np.c_[g, np.zeros(25)]
    np.testing.assert_array_equal(estimate_normals(flat, 10.0, 25), np.tile([0, 0, 1], (25, 1)))
