"""Shading: Lambert values of known planes; no rims or speckle at depth jumps and holes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from align3d_ad.render import RenderSettings, render_batch, view_preset_from_spec
from align3d_ad.render.shading import shade_depth

LIGHT = np.array([0.35, 0.45, 1.0]) / np.linalg.norm([0.35, 0.45, 1.0])


def _lambert(normal: np.ndarray, settings: RenderSettings) -> float:
    return settings.albedo * (
        settings.ambient + (1 - settings.ambient) * max(float(normal @ LIGHT), 0.0)
    )


def _plane(n: int, *, random: bool = False, x_range=(-1.0, 1.0), z: float = 0.0) -> np.ndarray:
    gen = np.random.default_rng(1)
    if random:
        u, v = gen.uniform(*x_range, n * n), gen.uniform(-1, 1, n * n)
    else:
        u, v = (a.reshape(-1) for a in np.meshgrid(np.linspace(*x_range, n), np.linspace(-1, 1, n)))
    return np.stack([u, v, np.full_like(u, z)], -1)


@pytest.mark.parametrize("angle", [0.0, 30.0, -50.0])
@pytest.mark.parametrize(("n", "random"), [(130, False), (25, False), (70, True)])
def test_shading_of_tilted_plane_matches_lambert(angle, n, random):
    settings = RenderSettings(image_size=96)
    preset = view_preset_from_spec([("y", angle)])
    rendering = render_batch(
        [torch.tensor(_plane(n, random=random), dtype=torch.float32)], preset, settings
    )
    a = math.radians(angle)
    expected = _lambert(np.array([math.sin(a), 0.0, math.cos(a)]), settings)
    grey = rendering.images[0, 0, 0]
    covered = rendering.index_map[0, 0] >= 0
    # Interior: farther than two splat radii from the outline (round splats make a wavy outline).
    reach = 2 * math.ceil(2 * float(rendering.splat_radius[0])) + 1
    inner = -torch.nn.functional.max_pool2d(-covered[None].float(), reach, 1, reach // 2)[0] > 0
    err = (grey[inner] - expected).abs()
    assert inner.sum() > 1000
    # A wrong normal (sign, axis, pixel size) is off by > 0.1 everywhere; sampling noise is ~0.01.
    assert float(err.mean()) < 0.01, float(err.mean())
    assert float(err.quantile(0.99)) < 0.08, float(err.quantile(0.99))


@pytest.mark.parametrize("angle", [0.0, 35.0])
def test_shading_has_no_rim_at_depth_jumps(angle):
    # A narrow near plane in front of a far one: the jump between them must not change the shade.
    near = _plane(60, x_range=(-0.4, 0.1), z=0.6)
    far = _plane(120, z=-0.6)
    settings = RenderSettings(image_size=96)
    preset = view_preset_from_spec([("y", angle)])
    rendering = render_batch(
        [torch.tensor(np.concatenate([near, far]), dtype=torch.float32)], preset, settings
    )
    a = math.radians(angle)
    expected = _lambert(np.array([math.sin(a), 0.0, math.cos(a)]), settings)
    grey = rendering.images[0, 0, 0]
    covered = rendering.index_map[0, 0] >= 0
    inner = (
        -torch.nn.functional.max_pool2d(-covered[None].float(), 3, 1, 1)[0] > 0
    )  # not the outline
    is_near = rendering.index_map[0, 0] < near.shape[0]
    jump = inner & (is_near != torch.roll(is_near, 1, 1))  # pixels right at the jump
    assert jump.sum() > 20
    assert float((grey[inner] - expected).abs().max()) < 0.03


def test_shade_depth_ignores_holes_and_background():
    settings = RenderSettings(image_size=32)
    depth = torch.full((1, 32, 32), 1.0)
    depth[0, :, :4] = torch.inf  # background strip
    depth[0, 10, 10] = torch.inf  # an isolated hole
    grey = shade_depth(depth, settings, radius=1.0, tolerance=0.05)
    flat = _lambert(np.array([0.0, 0.0, 1.0]), settings)
    covered = torch.isfinite(depth)
    assert torch.allclose(grey[covered], torch.tensor(flat), atol=1e-6)
    assert (grey[~covered] == settings.background).all()


def test_shade_depth_steep_slivers_are_shaded_steep_not_flat():
    # A slope far beyond the tolerance: no pixel links to its left/right neighbour, yet the
    # normal must follow the one-sided differences (a flat normal would be a bright speckle).
    settings = RenderSettings(image_size=32)
    cols = torch.arange(32, dtype=torch.float64)
    depth = (0.2 * cols).expand(1, 32, 32).clone()
    grey = shade_depth(depth, settings, radius=1.0, tolerance=0.01)
    slope = 0.2 * settings.pixels_per_unit  # depth units per scene unit along x
    normal = np.array([slope, 0.0, 1.0]) / np.hypot(slope, 1.0)
    torch.testing.assert_close(grey, torch.full_like(grey, _lambert(normal, settings)))
