"""Z-buffer splatting: index maps against a brute-force nearest-point search, keys, gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from align3d_ad.render import RenderSettings, render_batch, view_preset_from_spec
from align3d_ad.render.splat import EMPTY_KEY, close_gaps, decode_keys, depth_keys, disc_offsets

S = 16
RADIUS = 1.5


def _clouds():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(70, 3, generator=gen) * 2 - 1
    b = torch.rand(45, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.5]) + 5.0
    return [a, b]


def _preset():
    rots = Rotation.from_euler("xyz", [[10, 20, 30], [-50, 5, 70]], degrees=True).as_matrix()
    return view_preset_from_spec(
        rots, "random2", pre_transform=Rotation.from_euler("y", 15, degrees=True).as_matrix()
    )


def _render(points):
    settings = RenderSettings(image_size=S, splat_radius=RADIUS, close_gaps=False, margin=0.1)
    return render_batch(points, _preset(), settings)


def test_render_projection_matches_independent_formula():
    points = _clouds()
    rendering = _render(points)
    preset = _preset()
    for b, p in enumerate(points):
        p = p.double().numpy()
        lo, hi = p.min(0), p.max(0)
        c = (lo + hi) / 2
        q = (p - c) / np.linalg.norm(p - c, axis=1).max()
        cam = np.einsum("vij,jk,nk->nvi", preset.rotations, preset.pre_transform, q)
        x = (cam[..., 0] * 0.9 + 1) * S / 2
        y = (1 - cam[..., 1] * 0.9) * S / 2
        part = rendering.sample_slice(b)
        np.testing.assert_allclose(rendering.pixel_coords[part, :, 0].numpy(), x, atol=1e-4)
        np.testing.assert_allclose(rendering.pixel_coords[part, :, 1].numpy(), y, atol=1e-4)
        np.testing.assert_allclose(rendering.point_depth[part].numpy(), 1 - cam[..., 2], atol=1e-5)


def test_render_index_map_equals_brute_force_nearest_point_per_pixel():
    points = _clouds()
    rendering = _render(points)
    rows, cols = np.mgrid[0:S, 0:S]
    for b in range(2):
        part = rendering.sample_slice(b)
        xy = rendering.pixel_coords[part].numpy()
        depth = rendering.point_depth[part].numpy().astype(np.float32)
        for v in range(2):
            px = np.clip(np.floor(xy[:, v, 0]), 0, S - 1)
            py = np.clip(np.floor(xy[:, v, 1]), 0, S - 1)
            # (S, S, N): does point n's splat (disc around its own pixel centre) cover the pixel?
            cover = (px[None, None] - cols[..., None]) ** 2 + (
                py[None, None] - rows[..., None]
            ) ** 2
            cover = cover <= RADIUS**2
            d = np.where(cover, depth[:, v][None, None], np.inf)
            expected = np.where(
                cover.any(-1), np.argmin(d, axis=-1), -1
            )  # argmin: lowest index on ties
            np.testing.assert_array_equal(rendering.index_map[b, v].numpy(), expected)


def test_depth_keys_order_by_depth_then_index():
    depth = torch.tensor([0.5, 0.5, 0.25, 0.0, 1e-30, 2.0])
    index = torch.tensor([7, 3, 9, 5, 1, 0])
    order = torch.argsort(depth_keys(depth, index))
    assert order.tolist() == [3, 4, 2, 1, 0, 5]
    assert decode_keys(depth_keys(depth, index)).tolist() == index.tolist()
    assert decode_keys(torch.tensor([EMPTY_KEY])).tolist() == [-1]


def test_nearest_point_wins_and_ties_go_to_lowest_index():
    # Three points on the camera axis: two tied at the front, one behind.
    pts = torch.tensor(
        [[0.0, 0.0, -0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]
    )
    preset = view_preset_from_spec([("x", 0)])
    rendering = render_batch([pts], preset, RenderSettings(image_size=32, splat_radius=0))
    centre = rendering.index_map[0, 0, 16, 16]
    assert int(centre) == 1  # nearer than point 0; ties between 1 and 2 -> 1
    assert rendering.visible[:3, 0].tolist() == [False, True, True]


@pytest.mark.parametrize(("radius", "count"), [(0.5, 0), (1.0, 4), (1.5, 8), (2.0, 12), (2.3, 20)])
def test_disc_offsets_count_pixel_centres_within_radius(radius, count):
    offsets = disc_offsets(radius)
    assert len(offsets) == count
    assert all(dy * dy + dx * dx <= radius * radius for dy, dx in offsets)


def _keys(depth_grid):
    depth = torch.tensor(depth_grid, dtype=torch.float32)
    index = torch.arange(depth.numel()).view(depth.shape)
    keys = depth_keys(depth.nan_to_num(posinf=0.0), index)
    return torch.where(torch.isinf(depth), torch.full_like(keys, EMPTY_KEY), keys)


def test_close_gaps_fills_holes_and_see_through_but_keeps_silhouettes():
    inf = float("inf")
    grid = [
        [inf, inf, inf, inf, inf],
        [inf, 1.0, 1.0, 1.0, inf],
        [inf, 1.0, inf, 1.0, inf],  # hole in the middle
        [inf, 1.0, 9.0, 1.0, inf],  # a far surface showing through
        [inf, 1.0, 1.0, 1.0, inf],
    ]
    before = _keys(grid)
    after = decode_keys(close_gaps(before, 0.1, passes=1))
    # Each takes its nearest 8-neighbour, the lowest flat index (row * 5 + col) on ties.
    assert int(after[2, 2]) == 6
    assert int(after[3, 2]) == 11
    keep = torch.ones(5, 5, dtype=torch.bool)
    keep[2, 2] = keep[3, 2] = False
    assert torch.equal(after[keep], decode_keys(before)[keep])  # outline and surface unchanged
