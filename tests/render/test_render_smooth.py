"""3D score smoothing and the grid-Gaussian compatibility option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from align3d_ad.errors import ShapeError
from align3d_ad.render import point_spacing, smooth_grid_scores, smooth_point_scores


def _surface(n: int = 30) -> torch.Tensor:
    gen = np.random.default_rng(2)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    pts = np.stack([u, v, 0.2 * np.sin(3 * u)], -1).reshape(-1, 3) + gen.normal(0, 1e-3, (n * n, 3))
    return torch.tensor(pts, dtype=torch.float64)


def test_smooth_point_scores_keeps_constant_fields():
    pts = _surface()
    for scores in (
        torch.full((900,), 0.3, dtype=torch.float64),
        torch.full((900, 2), -2.0, dtype=torch.float64),
    ):
        torch.testing.assert_close(smooth_point_scores(pts, scores), scores)


def test_smooth_point_scores_spreads_a_spike_to_its_neighbours_only():
    pts = _surface()
    spike = torch.zeros(900, dtype=torch.float64)
    spike[437] = 1.0
    sigma = point_spacing(pts)  # one pass of a one-spacing kernel
    out = smooth_point_scores(pts, spike, sigma=sigma, k=8)
    _, nn = cKDTree(pts.numpy()).query(pts.numpy(), k=8)
    reached = np.flatnonzero((nn == 437).any(axis=1))  # points that have 437 among their 8 NN
    assert set(np.flatnonzero(out.numpy() > 0)) == set(reached)
    assert 0 < float(out[437]) < 1.0
    assert float(out.sum()) == pytest.approx(1.0, rel=0.3)  # mass roughly conserved


def test_smooth_point_scores_default_is_wider_and_differentiable():
    pts = _surface()
    spike = torch.zeros(900, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        spike[437] = 1.0
    wide = smooth_point_scores(pts, spike)
    narrow = smooth_point_scores(pts, spike.detach(), sigma=point_spacing(pts))
    assert (wide > 1e-6).sum() > 3 * (narrow > 1e-6).sum()
    wide.sum().backward()
    assert spike.grad is not None and spike.grad.abs().sum() > 0


def test_smooth_point_scores_bad_shapes_and_tiny_clouds():
    with pytest.raises(ShapeError, match="scores"):
        smooth_point_scores(torch.rand(5, 3), torch.rand(4))
    one = torch.tensor([0.7])
    torch.testing.assert_close(smooth_point_scores(torch.zeros(1, 3), one), one)


@pytest.mark.parametrize("sigma", [4.0, 1.3])
def test_smooth_grid_scores_matches_scipy_gaussian_filter(sigma):
    gen = np.random.default_rng(0)
    grid = gen.random((2, 23, 37))
    ours = smooth_grid_scores(torch.tensor(grid), sigma)
    ref = np.stack([gaussian_filter(g, sigma, mode="reflect", truncate=4.0) for g in grid])
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    # 2-D input works too; a constant grid stays constant
    flat = smooth_grid_scores(torch.full((9, 9), 2.5, dtype=torch.float64))
    torch.testing.assert_close(flat, torch.full((9, 9), 2.5, dtype=torch.float64))


def _reference_smooth(points: torch.Tensor, scores: torch.Tensor, sigma: float, k: int = 16):
    """The former implementation: kNN in input order, an explicit gather-sum per pass."""
    spacing = point_spacing(points)
    step = min(sigma, spacing)
    passes = min(64, int(np.ceil((sigma / step) ** 2 - 1e-9)))
    cloud = points.numpy()
    dist, idx = cKDTree(cloud).query(cloud, k=k)
    weights = np.exp(-0.5 * (dist / step) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    idx_t, w_t = torch.from_numpy(idx), torch.from_numpy(weights).to(scores.dtype)
    if scores.dim() == 2:
        w_t = w_t.unsqueeze(-1)
    out = scores
    for _ in range(passes):
        out = (out[idx_t] * w_t).sum(dim=1)
    return out


@pytest.mark.parametrize("channels", [None, 3])
def test_smooth_point_scores_equals_the_plain_gather_and_ignores_point_order(channels):
    gen = torch.Generator().manual_seed(3)
    pts = _surface(40)  # rows in grid order ...
    perm = torch.randperm(pts.shape[0], generator=gen)
    pts = pts[perm]  # ... shuffled: consecutive rows far apart, as in a Real3D-AD scan
    shape = (pts.shape[0],) if channels is None else (pts.shape[0], channels)
    scores = torch.rand(shape, generator=gen, dtype=torch.float64)
    sigma = 3.0 * point_spacing(pts)
    got = smooth_point_scores(pts, scores, sigma=sigma)
    torch.testing.assert_close(got, _reference_smooth(pts, scores, sigma), rtol=0, atol=1e-12)
    back = torch.argsort(perm)  # the same cloud in grid order gives the same per-point values
    again = smooth_point_scores(pts[back], scores[back], sigma=sigma)
    torch.testing.assert_close(again, got[back], rtol=0, atol=1e-12)
    given = smooth_point_scores(pts, scores, sigma=sigma, spacing=point_spacing(pts))
    torch.testing.assert_close(given, got, rtol=0, atol=0)
