"""Normalisation, projection formula, point spacing, settings validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from align3d_ad.errors import ConfigError
from align3d_ad.render import RenderSettings, normalisation, point_spacing, project


def test_normalisation_centres_bbox_and_fits_unit_sphere():
    pts = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 3.0], [2.0, 6.0, 3.0]])
    centre, scale = normalisation(pts)
    np.testing.assert_allclose(centre.numpy(), [2.0, 4.0, 3.0])
    # farthest point from (2, 4, 3) is at distance sqrt(1 + 4) or 2 -> sqrt(5)
    assert float(scale) == pytest.approx(1 / math.sqrt(5))
    assert float(((pts - centre) * scale).norm(dim=1).max()) == pytest.approx(1.0)


def test_normalisation_of_identical_points_is_finite():
    centre, scale = normalisation(torch.ones(4, 3))
    assert float(scale) == 1.0 and torch.equal(centre, torch.ones(3))


def test_project_orthographic_matches_pixel_convention():
    s = RenderSettings(image_size=100, margin=0.1)
    cam = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, -1.0], [-0.5, -0.5, 0.25]])
    xy, depth = project(cam, s)
    # centre -> (50, 50); x = +1 -> 50 + 0.9 * 50; y = +1 is up (smaller row)
    np.testing.assert_allclose(
        xy.numpy(), [[50, 50], [95, 50], [50, 5], [50 - 22.5, 50 + 22.5]], atol=1e-5
    )
    np.testing.assert_allclose(depth.numpy(), [1.0, 0.0, 2.0, 0.75])


def test_project_perspective_fits_unit_sphere_silhouette():
    d = 3.0
    s = RenderSettings(image_size=64, projection="perspective", camera_distance=d, margin=0.0)
    # Tangent point of the unit sphere seen from (0, 0, d): at z = 1/d, x = sqrt(1 - 1/d^2).
    z = 1 / d
    cam = torch.tensor([[math.sqrt(1 - z * z), 0.0, z]], dtype=torch.float64)
    xy, depth = project(cam, s)
    assert float(xy[0, 0]) == pytest.approx(64.0)  # the right image border
    assert float(depth[0]) == pytest.approx(d - z)


def _grid(step: float, n: int) -> torch.Tensor:
    u, v = np.meshgrid(np.arange(n) * step, np.arange(n) * step)
    return torch.tensor(np.stack([u, v, 0.1 * u], -1).reshape(-1, 3), dtype=torch.float64)


def test_point_spacing_recovers_grid_step_on_full_and_subsampled_clouds():
    small, big = _grid(0.01, 40), _grid(0.01, 110)  # 1600 and 12100 points (> subsample)
    area_step = 0.01 * math.sqrt(1.01)  # the plane z = 0.1 u is stretched by sqrt(1 + 0.1^2)
    assert point_spacing(small) == pytest.approx(area_step, rel=0.15)
    assert point_spacing(big) == pytest.approx(area_step, rel=0.15)


def test_point_spacing_ignores_point_order():
    pts = _grid(0.02, 90) + 0.003 * torch.randn(8100, 3, dtype=torch.float64)
    perm = torch.randperm(pts.shape[0])
    assert point_spacing(pts) == point_spacing(pts[perm])


def test_point_spacing_degenerate_clouds():
    assert point_spacing(torch.zeros(1, 3)) == 0.0
    assert point_spacing(torch.zeros(5, 3)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 1}, "image_size"),
        ({"image_size": 32.0}, "image_size"),
        ({"image_size": 32, "projection": "fisheye"}, "projection"),
        ({"image_size": 32, "margin": 0.5}, "margin"),
        ({"image_size": 32, "splat_radius": -1.0}, "splat_radius"),
        ({"image_size": 32, "depth_tolerance": 0.0}, "depth_tolerance"),
        (
            {"image_size": 32, "projection": "perspective", "camera_distance": 1.0},
            "camera_distance",
        ),
        ({"image_size": 32, "light_direction": (0, 0, 0)}, "light_direction"),
    ],
)
def test_render_settings_rejects_bad_values(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        RenderSettings(**kwargs)


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_project_points_equals_rotate_then_project(projection):
    from scipy.spatial.transform import Rotation

    from align3d_ad.render.camera import project_points

    settings = RenderSettings(image_size=50, projection=projection, camera_distance=2.5)
    pts = torch.randn(40, 3, dtype=torch.float64)
    pts = pts / pts.norm(dim=1, keepdim=True).max()
    rots = torch.tensor(Rotation.random(4, random_state=0).as_matrix())
    xy, depth = project_points(pts, rots, settings)
    ref_xy, ref_depth = project(torch.einsum("vij,tj->tvi", rots, pts), settings)
    torch.testing.assert_close(xy, ref_xy)
    torch.testing.assert_close(depth, ref_depth)
