"""Back-projection: known functions of pixel coordinates, constants, kNN fill, gradients."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from align3d_ad.errors import ShapeError
from align3d_ad.render import (
    RenderSettings,
    back_project,
    hidden_neighbours,
    render_batch,
    sample_maps,
    view_preset_from_spec,
)
from align3d_ad.render.backproject import FILL_EXACT_SPACINGS
from pipeline_helpers import fibonacci_sphere

S = 32


def _rendering(dtype=torch.float32):
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(300, 3, generator=gen, dtype=dtype)
    a = a / a.norm(dim=1, keepdim=True)  # a sphere: each view sees about half
    b = torch.rand(120, 3, generator=gen, dtype=dtype)
    return render_batch([a, b], "mvtec3d", RenderSettings(image_size=S))


def _pixel_grid(dtype=torch.float32):
    rows, cols = torch.meshgrid(
        torch.arange(S, dtype=dtype), torch.arange(S, dtype=dtype), indexing="ij"
    )
    return cols + 0.5, rows + 0.5  # pixel-centre coordinates (x, y)


def test_back_project_returns_linear_function_of_pixel_coordinates():
    rendering = _rendering(torch.float64)
    x, y = _pixel_grid(torch.float64)
    n_v = rendering.num_views
    a = torch.linspace(-1, 1, n_v, dtype=torch.float64).view(n_v, 1, 1)
    maps = torch.stack([a * x + 0.5 * y + 3.0, -a * y]).permute(1, 0, 2, 3)  # (V, 2, S, S)
    maps = maps.unsqueeze(0).expand(2, -1, -1, -1, -1)
    out = back_project(maps, rendering)
    xy = rendering.pixel_coords.clamp(0.5, S - 0.5)  # bilinear sampling clamps at border centres
    per_view = torch.stack(
        [a.view(1, -1) * xy[..., 0] + 0.5 * xy[..., 1] + 3.0, -a.view(1, -1) * xy[..., 1]], -1
    )
    vis = rendering.visible.double().unsqueeze(-1)
    expected = (per_view * vis).sum(1) / vis.sum(1)
    seen = rendering.visible.any(1)
    got = torch.cat(out)
    torch.testing.assert_close(got[seen], expected[seen], rtol=0, atol=1e-9)


def test_back_project_constant_map_returns_constant_everywhere():
    rendering = _rendering()
    maps = torch.full((2, rendering.num_views, 3, S, S), 0.375)
    for values, n in zip(back_project(maps, rendering), rendering.counts):
        assert values.shape == (n, 3)
        torch.testing.assert_close(values, torch.full_like(values, 0.375))


def test_sample_maps_equals_grid_sample_border_align_corners_false():
    rendering = _rendering()
    maps = torch.rand(2, rendering.num_views, 2, 12, 20)  # not the image size: rescaled positions
    got = sample_maps(maps, rendering)
    for b in range(2):
        xy = rendering.split(rendering.pixel_coords)[b]  # (N, V, 2)
        grid = (xy / S * 2 - 1).permute(1, 0, 2).unsqueeze(2)  # (V, N, 1, 2)
        ref = F.grid_sample(
            maps[b], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        torch.testing.assert_close(
            rendering.split(got)[b], ref[..., 0].permute(2, 0, 1), atol=1e-5, rtol=0
        )


def test_sampling_low_resolution_maps_equals_their_bilinear_upsampling():
    # At S-pixel centres the upsampled map holds the exact bilinear value of the low-res map there.
    rendering = _rendering(torch.float64)
    centred = replace(rendering, pixel_coords=rendering.pixel_coords.floor() + 0.5)
    low = torch.rand(2 * rendering.num_views, 1, 8, 8, dtype=torch.float64)
    up = F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
    shape = (2, rendering.num_views, 1)
    torch.testing.assert_close(
        sample_maps(low.view(*shape, 8, 8), centred), sample_maps(up.view(*shape, S, S), centred)
    )


def test_single_view_hidden_points_take_mean_of_visible_neighbours():
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, 20), np.linspace(-0.5, 0.5, 20))
    near = np.stack([u, v, np.full_like(u, 0.3)], -1).reshape(-1, 3)
    far = near[::3] + np.array([0.01, -0.02, -0.6])  # behind the near plane: hidden
    pts = torch.tensor(np.concatenate([near, far]), dtype=torch.float64)
    rendering = render_batch(
        [pts], view_preset_from_spec([("x", 0)]), RenderSettings(image_size=40)
    )
    assert rendering.visible[:400, 0].all() and not rendering.visible[400:, 0].any()
    x, _ = _pixel_grid(torch.float64)
    maps = torch.sin(x / 5).expand(1, 1, 1, S, S)
    maps = F.interpolate(maps[0], size=(40, 40), mode="bilinear").unsqueeze(0)
    values = back_project(maps, rendering, fill_neighbours=4)[0][:, 0]
    _, nn = cKDTree(near).query(pts[400:].numpy(), k=4)
    expected = values[:400].numpy()[nn].mean(axis=1)
    np.testing.assert_allclose(values[400:].numpy(), expected, atol=1e-12)
    hidden, neighbours, weights = hidden_neighbours(rendering, 4)
    assert hidden.tolist() == list(range(400, pts.shape[0]))
    assert hidden_neighbours(rendering, 4)[0] is hidden  # cached


def test_back_project_is_differentiable_wrt_maps():
    rendering = _rendering(torch.float64)
    maps = torch.rand(2, rendering.num_views, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    out = back_project(maps, rendering)
    (out[0].sum() + (out[1] ** 2).sum()).backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    two_views = view_preset_from_spec([("x", 0), ("y", 90)])
    small_render = render_batch(
        [rendering.points[:300], rendering.points[300:]], two_views, RenderSettings(image_size=8)
    )
    small = torch.rand(2, 2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: torch.cat(back_project(m, small_render)), (small,))


def test_back_project_rejects_mismatched_maps():
    rendering = _rendering()
    with pytest.raises(ShapeError, match="B=2 samples and V=9 views"):
        back_project(torch.zeros(1, 9, 1, S, S), rendering)
    with pytest.raises(ShapeError, match="maps"):
        back_project(torch.zeros(2, 9, S, S), rendering)


def _exact_fill(points: np.ndarray, seen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hidden rows and their exact k nearest visible rows (the former fill)."""
    vis, hid = np.flatnonzero(seen), np.flatnonzero(~seen)
    dist, nn = cKDTree(points[vis]).query(points[hid], k=k)
    return hid, vis[nn], dist


def test_hidden_points_near_the_visible_surface_take_their_exact_nearest_neighbours():
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, 30), np.linspace(-0.5, 0.5, 30))
    front = np.stack([u, v, np.full_like(u, 0.3)], -1).reshape(-1, 3)
    step = 1.0 / 29
    back = front[::2] + np.array([0.3 * step, 0.2 * step, -5 * step])  # behind: hidden, but near
    # and a small patch far behind, joined to nothing: its exact neighbours too
    patch = front[:60:3] + np.array([0.1 * step, 0.4 * step, -2.0])
    pts = torch.tensor(np.concatenate([front, back, patch]), dtype=torch.float64)
    rendering = render_batch(
        [pts], view_preset_from_spec([("x", 0)]), RenderSettings(image_size=96)
    )
    seen = rendering.visible.any(1).numpy()
    assert seen[:900].all() and not seen[900:].any()
    hidden, neighbours, weights = hidden_neighbours(rendering, 8)
    hid, exact, dist = _exact_fill(pts.numpy(), seen, 8)
    radius = FILL_EXACT_SPACINGS * float(rendering.spacing[0] / rendering.scales[0])
    assert dist[:450].max() < radius < dist[450:, 0].min()  # near ones, and a far part
    assert hidden.tolist() == hid.tolist()
    np.testing.assert_array_equal(np.sort(neighbours.numpy(), 1), np.sort(exact, 1))
    np.testing.assert_allclose(weights.numpy(), 1 / 8)


def test_hidden_points_deep_in_an_unseen_region_take_nearly_nearest_visible_points():
    # A closed sphere seen from one side: its back is hidden, most of it far from the visible
    # half (beyond FILL_EXACT_SPACINGS spacings), where the fill follows the surface.
    pts = fibonacci_sphere(6000)[np.random.default_rng(1).permutation(6000)]
    rendering = render_batch(
        [torch.tensor(pts)], view_preset_from_spec([("x", 0)]), RenderSettings(image_size=64)
    )
    seen = rendering.visible.any(1).numpy()
    hidden, neighbours, weights = hidden_neighbours(rendering, 8)
    hid, exact, dist = _exact_fill(pts, seen, 8)
    assert hidden.tolist() == hid.tolist()
    radius = FILL_EXACT_SPACINGS * float(rendering.spacing[0] / rendering.scales[0])
    far = dist[:, -1] > radius
    assert far.mean() > 0.3  # the propagation is exercised
    nb = neighbours.numpy()
    assert seen[nb].all()  # only visible points fill
    assert (np.sort(nb, 1)[:, 1:] != np.sort(nb, 1)[:, :-1]).all()  # k distinct ones
    np.testing.assert_allclose(weights.numpy().sum(1), 1.0)
    np.testing.assert_array_equal(np.sort(nb[~far], 1), np.sort(exact[~far], 1))
    got = np.linalg.norm(pts[nb] - pts[hid][:, None], axis=-1).mean(1)
    ratio = got / dist.mean(1)
    assert np.median(ratio[far]) < 1.02 and ratio.max() < 1.3
    # the maps are filled with exactly these sources
    maps = torch.rand(1, 1, 2, 8, 8, dtype=torch.float64)
    values = back_project(maps, rendering)[0]
    torch.testing.assert_close(values[hidden], values[neighbours].mean(1), rtol=0, atol=1e-12)
