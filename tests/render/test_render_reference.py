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
    eyecandies_tooling_transform,
    fit_camera,
    focal_length,
    project_window,
    reference_frame,
    render_reference_views,
)
from align3d_ad.render.reference_normals import (
    _robust_smallest_eigenvector,
    estimate_normals,
    estimate_normals_torch,
)
from align3d_ad.render.reference_raster import phong_grey, square_zbuffer, window_min


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
    win = square_zbuffer(uv, depth, size, 64)[0]
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
    grey = phong_grey(rel, normals, torch.tensor([1.2124]), torch.tensor([1.0]))
    # facing either way: 0.7 * 0.66 * 2 + 0.2 * 2 (specular ignores the normal's sign) > 1;
    # 60 degrees off: 0.7 * 0.66 * 2 * cos 60, the highlight (0.5^100) gone, same for -n
    assert grey[0].tolist() == pytest.approx([1.0, 1.0, 0.462, 0.462], abs=1e-9)


def test_phong_turns_normals_facing_away_to_the_eye():
    # a rim point right of the centre whose outward normal faces slightly away from the eye:
    # one-sided it would be black (both lights on its other side); Open3D lights it as -n
    rel = torch.tensor([[[0.4, 0.0, 0.0]]], dtype=torch.float64)
    n = torch.tensor([[[1.0, 0.0, -0.1]]], dtype=torch.float64) / math.hypot(1.0, 0.1)
    grey = phong_grey(rel, n, torch.tensor([1.2124]), torch.tensor([1.0]))
    p, m = rel[0, 0].numpy(), -n[0, 0].numpy()
    e = (np.array([0, 0, 1.2124]) - p) / np.linalg.norm(np.array([0, 0, 1.2124]) - p)
    total = 0.0
    for z in (2.0, -2.0):
        ld = (np.array([0, 0, z]) - p) / np.linalg.norm(np.array([0, 0, z]) - p)
        cos = float(m @ ld)
        r = 2 * cos * m - ld
        total += 2 * (0.7 * 0.66 * max(cos, 0) + 0.2 * min(max(float(e @ r), 0), 1) ** 100)
    assert total > 0.3 and float(grey[0, 0]) == pytest.approx(total, abs=1e-8)
    assert float(phong_grey(rel, -n, torch.tensor([1.2124]), torch.tensor([1.0]))[0, 0]) == pytest.approx(total)


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


def _rods() -> tuple[np.ndarray, np.ndarray]:
    """Points along world +x (length 1), +y (0.6) and +z (0.3) from the origin: rod 0, 1, 2."""
    t = np.linspace(0.0, 1.0, 400)
    rods = [np.c_[t, 0 * t, 0 * t], np.c_[0 * t, 0.6 * t, 0 * t], np.c_[0 * t, 0 * t, 0.3 * t]]
    return np.concatenate(rods).astype(np.float32), np.repeat(np.arange(3), len(t))


def test_eyecandies_reference_views_put_the_world_axes_where_the_reference_does():
    # the tooling (world) frame -> 0.1 R_x(135 deg): +x stays right; +y goes down the image and
    # towards the camera; +z (up from the belt) goes down the image and away from the camera
    pts, rod = _rods()
    preset = get_view_preset("eyecandies")
    assert preset.labels[2] == "x0"
    views = render_reference_views(torch.from_numpy(pts), torch.from_numpy(preset.rotations[2:3].copy()),
                                   REFERENCE_STYLES["eyecandies"], ReferenceRenderSettings())  # fmt: skip
    uv, depth = views.pixel_coords[:, 0].double(), views.point_depth[:, 0].double()
    steps = {k: (torch.diff(uv[rod == k], dim=0), torch.diff(depth[rod == k])) for k in range(3)}
    assert (steps[0][0][:, 0] > 0).all() and float(uv[rod == 0, 1].std()) < 1.0
    assert (steps[1][0][:, 1] > 0).all() and (steps[1][1] < 0).all()
    assert (steps[2][0][:, 1] > 0).all() and (steps[2][1] > 0).all()
    assert float(uv[rod > 0, 0].max()) < 167.5  # the x = 0 rods stay left of the centre


def test_eyecandies_normals_come_from_the_swapped_scaled_frame_then_tilt():
    # a plane tilted about x, 0.5 apart in the world: radius 0.1 finds neighbours only at 0.1 scale
    g = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2) * 0.5
    normal = np.array([0.0, -math.sin(0.3), math.cos(0.3)])
    pts = np.c_[g[:, 0], g[:, 1] * math.cos(0.3), g[:, 1] * math.sin(0.3)]
    frame, normals = reference_frame(torch.from_numpy(pts), REFERENCE_STYLES["eyecandies"])
    t = eyecandies_tooling_transform()
    np.testing.assert_allclose(frame.numpy(), pts @ t.T, atol=1e-12)
    expected = t @ normal / np.linalg.norm(t @ normal)
    np.testing.assert_allclose(np.abs(normals.numpy() @ expected), 1.0, atol=1e-6)


def test_eyecandies_clouds_the_reader_turned_up_are_turned_back():
    pts, _ = _cube(30)
    pts = pts * np.array([1.0, 0.6, 0.3], dtype=np.float32)
    plain = PointCloudSample(pts, category="Lollipop")
    turned = PointCloudSample((pts * [1.0, -1.0, -1.0]).astype(np.float32), category="Lollipop",
                              meta={"turned_up": True})  # fmt: skip
    a, b = (render_samples([s], "eyecandies", ReferenceRenderSettings()) for s in (plain, turned))
    assert torch.equal(a.images, b.images) and torch.equal(a.visible, b.visible)
    torch.testing.assert_close(a.pixel_coords, b.pixel_coords, rtol=0, atol=1e-4)


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
def test_window_min_equals_the_window_minimum(size):
    x = torch.randint(0, 1000, (2, 5, 30), dtype=torch.int32)
    got = window_min(x, size, 2)
    expected = torch.stack([x[..., j : j + size].amin(-1) for j in range(30 - size + 1)], -1)
    assert torch.equal(got, expected)


def test_normals_are_the_smallest_eigenvector_with_the_solvers_sign():
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


def test_device_normals_equal_the_kd_tree_normals_up_to_sign():
    rng = np.random.default_rng(5)
    uv = rng.uniform(-1, 1, size=(3000, 2))
    pts = np.c_[uv, 0.3 * np.sin(2 * uv[:, 0]) * np.cos(3 * uv[:, 1])]
    pts = np.r_[pts, [[5.0, 5.0, 5.0]]]  # a lone point: (0, 0, 1) both ways
    a = estimate_normals(pts, 0.15, 30)
    b = estimate_normals_torch(torch.from_numpy(pts), 0.15, 30).numpy()
    np.testing.assert_allclose(np.abs((a * b).sum(1)), 1.0, atol=1e-5)
    np.testing.assert_array_equal(b[-1], [0.0, 0.0, 1.0])
