"""Rendering properties: occlusion, visibility, orientation of sensor scans, GT, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from align3d_ad.errors import ShapeError
from align3d_ad.render import RenderSettings, render_batch, view_preset_from_spec

FRONT = view_preset_from_spec([("x", 0)], "front")


def _plane(z: float, n: int = 30, half: float = 0.5) -> torch.Tensor:
    u, v = np.meshgrid(np.linspace(-half, half, n), np.linspace(-half, half, n))
    return torch.tensor(
        np.stack([u, v, np.full_like(u, z)], -1).reshape(-1, 3), dtype=torch.float32
    )


def test_two_parallel_planes_head_on_far_plane_invisible():
    near, far = _plane(0.5), _plane(-0.5)
    rendering = render_batch([torch.cat([far, near])], FRONT, RenderSettings(image_size=48))
    vis = rendering.visible[:, 0]
    assert not vis[:900].any() and vis[900:].all()
    shown = rendering.index_map[0, 0]
    assert (shown[shown >= 0] >= 900).all()


def _cube(n: int = 24) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Points on the 6 faces of [-1, 1]^3 (face interiors), face id and distance to the face edge."""
    t = np.linspace(-0.96, 0.96, n)
    u, v = (a.reshape(-1) for a in np.meshgrid(t, t))
    pts, face, edge = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            p = np.zeros((u.size, 3))
            p[:, axis] = sign
            p[:, (axis + 1) % 3], p[:, (axis + 2) % 3] = u, v
            pts.append(p)
            face.append(np.full(u.size, 2 * axis + (sign > 0)))
            edge.append(1 - np.maximum(np.abs(u), np.abs(v)))
    return (
        torch.tensor(np.concatenate(pts), dtype=torch.float32),
        np.concatenate(face),
        np.concatenate(edge),
    )


CUBE_ROT = Rotation.from_euler("xy", [35, 40], degrees=True).as_matrix()


def _facing(face: np.ndarray) -> np.ndarray:
    normals = np.zeros((6, 3))
    for f in range(6):
        normals[f, f // 2] = 1.0 if f % 2 else -1.0
    return (normals @ CUBE_ROT.T)[face, 2] > 0  # camera on +z


def test_cube_exactly_faces_toward_camera_visible():
    pts, face, edge = _cube()
    preset = view_preset_from_spec(CUBE_ROT[None], "cube")
    rendering = render_batch([pts], preset, RenderSettings(image_size=128))
    vis = rendering.visible[:, 0].numpy()
    facing = _facing(face)
    assert facing.sum() == 3 * 24 * 24  # three faces face the camera
    assert vis[facing].all()
    # Hidden faces: invisible away from the silhouette edges they share with visible faces.
    assert not vis[~facing & (edge > 0.3)].any()


def test_visibility_is_invariant_to_point_order():
    pts, _, _ = _cube(16)
    preset = view_preset_from_spec(np.stack([CUBE_ROT, CUBE_ROT.T]), "cube2")
    settings = RenderSettings(image_size=64)
    perm = torch.randperm(pts.shape[0])
    a = render_batch([pts], preset, settings)
    b = render_batch([pts[perm]], preset, settings)
    assert torch.equal(a.visible[perm], b.visible)
    assert torch.equal(a.depth, b.depth)
    assert torch.equal(a.index_map >= 0, b.index_map >= 0)


def _height_field(n: int = 40) -> tuple[torch.Tensor, int]:
    """A sensor-frame scan: plane at z = 1 with a bump towards the sensor (smaller z) at the centre."""
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    z = 1.0 - 0.3 * np.exp(-(u**2 + v**2) / 0.1)
    pts = np.stack([u, v, z], -1).reshape(-1, 3)
    return torch.tensor(pts, dtype=torch.float32), int(np.argmin(z))


def test_sensor_scan_top_faces_camera_in_mvtec3d_preset():
    pts, peak = _height_field()
    rendering = render_batch([pts], "mvtec3d", RenderSettings(image_size=64))
    front = rendering.preset.labels.index("x0")
    depth = rendering.point_depth[:, front]
    assert (
        int(torch.argmin(depth)) == peak
    )  # the bump (nearest to the sensor) is nearest to the camera
    assert rendering.visible[:, front].all()
    # Same image layout as the sensor: +x to the right, +y (sensor rows) downwards, not mirrored.
    xy = rendering.pixel_coords[:, front]
    assert np.corrcoef(xy[:, 0], pts[:, 0])[0, 1] > 0.999
    assert np.corrcoef(xy[:, 1], pts[:, 1])[0, 1] > 0.999
    # Without the flip the camera would look at the scan's back: the bump would be farthest.
    plain = render_batch([pts], view_preset_from_spec([("x", 0)]), RenderSettings(image_size=64))
    assert int(torch.argmax(plain.point_depth[:, 0])) == peak


@pytest.mark.parametrize(("n", "jitter"), [(12, False), (150, False), (60, True)])
def test_render_closes_sparse_and_dense_surfaces(n, jitter):
    gen = np.random.default_rng(0)
    if jitter:  # random (Poisson) sampling, the hardest case for closed coverage
        u, v = gen.uniform(-1, 1, (2, n * n))
    else:
        u, v = (a.reshape(-1) for a in np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n)))
    pts = torch.tensor(np.stack([u, v, 0 * u], -1), dtype=torch.float32)  # rectangles in all views
    preset = view_preset_from_spec([("x", 0), ("x", 40), ("y", -50)])
    rendering = render_batch([pts], preset, RenderSettings(image_size=96))
    for view in range(3):
        xy = rendering.pixel_coords[:, view]
        (x0, y0), (x1, y1) = xy.amin(0).ceil().long() + 2, xy.amax(0).floor().long() - 2
        inside = rendering.index_map[0, view, y0:y1, x0:x1]
        assert (inside >= 0).all(), f"holes in view {view}"


def test_render_is_bit_identical_on_repeat():
    pts, _, _ = _cube(14)
    colors = torch.rand(pts.shape[0], 3)
    labels = torch.rand(pts.shape[0]) > 0.7
    args = ([pts, pts[:300] * 2], "mvtec3d", RenderSettings(image_size=40))
    a = render_batch(*args, colors=[colors, colors[:300]], labels=[labels, labels[:300]])
    b = render_batch(*args, colors=[colors, colors[:300]], labels=[labels, labels[:300]])
    for name in (
        "images",
        "color_images",
        "gt_masks",
        "depth",
        "index_map",
        "pixel_coords",
        "visible",
    ):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_gt_masks_and_colors_follow_the_visible_point():
    pts, _, _ = _cube(14)
    n = pts.shape[0]
    colors = torch.rand(n, 3)
    labels = torch.rand(n) > 0.8
    rendering = render_batch(
        [pts], "real3d", RenderSettings(image_size=40), colors=[colors], labels=[labels]
    )
    idx = rendering.index_map[0]
    covered = idx >= 0
    expected = torch.zeros_like(covered)
    expected[covered] = labels[idx[covered]]
    assert torch.equal(rendering.gt_masks[0], expected)
    assert rendering.gt_masks.any()
    painted = rendering.color_images[0].permute(0, 2, 3, 1)
    assert torch.equal(painted[covered], colors[idx[covered]])
    assert (painted[~covered] == 1.0).all()
    grey = rendering.images[0].permute(0, 2, 3, 1)
    assert (grey[~covered] == 1.0).all()  # white background
    assert (grey[covered] <= 0.7 + 1e-6).all()  # albedo 0.7


def test_packed_batch_equals_single_renders():
    pts, _, _ = _cube(12)
    other = torch.rand(200, 3)
    settings = RenderSettings(image_size=32)
    both = render_batch([pts, other], "eyecandies", settings)
    alone = render_batch([other], "eyecandies", settings)
    assert torch.equal(both.index_map[1], alone.index_map[0])
    assert torch.equal(both.split(both.visible)[1], alone.visible)
    assert torch.equal(both.images[1], alone.images[0])


def test_render_bad_input_raises_clear_errors():
    settings = RenderSettings(image_size=16)
    with pytest.raises(ShapeError, match="at least one point"):
        render_batch([torch.zeros(0, 3)], "real3d", settings)
    with pytest.raises(ValueError, match="finite"):
        render_batch(
            [torch.tensor([[0.0, float("nan"), 1.0], [1.0, 2.0, 3.0]])], "real3d", settings
        )
    with pytest.raises(ShapeError, match=r"points\[0\]"):
        render_batch([torch.zeros(5, 2)], "real3d", settings)
    with pytest.raises(ShapeError, match="sequence"):
        render_batch(torch.zeros(5, 3), "real3d", settings)
    with pytest.raises(ShapeError, match="colors"):
        render_batch([torch.rand(5, 3)], "real3d", settings, colors=[torch.rand(4, 3)])


@pytest.mark.parametrize("cloud", [torch.tensor([[1.0, 2.0, 3.0]]), torch.full((7, 3), 0.25)])
def test_render_degenerate_clouds_have_defined_result(cloud):
    rendering = render_batch([cloud], "mvtec3d", RenderSettings(image_size=16))
    assert rendering.visible.all()  # one location, seen from every view
    shown = rendering.index_map[rendering.index_map >= 0]
    assert shown.numel() >= 9 and (shown == 0).all()  # ties go to the lowest index
    assert torch.isfinite(rendering.images).all()


def test_perspective_projection_renders_and_keeps_occlusion():
    near, far = _plane(0.5), _plane(-0.5)
    settings = RenderSettings(image_size=48, projection="perspective", camera_distance=2.0)
    rendering = render_batch([torch.cat([far, near])], FRONT, settings)
    assert rendering.visible[900:, 0].all() and not rendering.visible[:900, 0].any()
    # The near plane looks bigger than the far one of the same size.
    extent = [float(rendering.pixel_coords[s, 0, 0].max() - rendering.pixel_coords[s, 0, 0].min())
              for s in (slice(0, 900), slice(900, 1800))]  # fmt: skip
    z = 0.5 / np.sqrt(0.75)  # the planes' depth after normalisation (corner radius sqrt(0.75))
    assert extent[1] == pytest.approx(extent[0] * (2.0 + z) / (2.0 - z), rel=1e-4)
