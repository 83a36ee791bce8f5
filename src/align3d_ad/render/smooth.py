"""Smoothing of per-point scores (METHOD.md §6).

The reference smooths the 336 x 336 organised-grid map with a Gaussian of sigma = 4 px, i.e. about
4 point spacings, which needs an organised grid. :func:`smooth_point_scores` smooths in 3D instead:
one kNN query (k neighbours, no gradient; cKDTree on the CPU, :func:`.knn.knn` on the points'
device elsewhere, see :func:`.knn.neighbour_backend`), then ``passes`` rounds of a Gaussian-weighted
mean over each point's neighbours (a differentiable fused gather, ``embedding_bag``). Variances add
over passes, so a wide kernel costs gathers, not a huge k: the default (sigma = 4 spacings) takes
16 passes of a 1-spacing kernel over 16 neighbours, matching the reference's width on any cloud.
Both run on the points in Z order (near in space = near in memory, :mod:`.neighbours`), so the
cost per point stays about flat up to millions of points instead of growing 10x once the cloud
outgrows the CPU caches.
:func:`smooth_grid_scores` is the reference's grid Gaussian, kept for compatibility (equal to
``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4.0)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from .._checks import check_shape
from ..errors import ShapeError
from .camera import point_spacing
from .knn import knn, neighbour_backend
from .neighbours import inverse_permutation, search_workers, spatial_order, spatial_order_tensor

#: Neighbours per point of the 3D smoothing.
SMOOTH_NEIGHBOURS = 16
#: Default 3D kernel width in point spacings (the reference's 4 grid pixels, METHOD.md §6).
DEFAULT_SIGMA_SPACINGS = 4.0
#: Width of one smoothing pass in point spacings (well inside the reach of 16 neighbours).
PASS_SIGMA_SPACINGS = 1.0
#: First cell of the torch search, in expected k-th neighbour distances (sqrt(k / pi) spacings).
SEARCH_CELL_SCALE = 1.2
#: Upper bound on passes.
MAX_PASSES = 64
#: Reference grid Gaussian (METHOD.md §6) and scipy.ndimage's default truncation.
GRID_SIGMA = 4.0
GRID_TRUNCATE = 4.0


def smooth_point_scores(
    points: torch.Tensor,
    scores: torch.Tensor,
    *,
    sigma: float | None = None,
    k: int = SMOOTH_NEIGHBOURS,
    spacing: float | None = None,
    plan: SmoothingPlan | None = None,
) -> torch.Tensor:
    """Gaussian smoothing of per-point scores over 3D nearest neighbours.

    Args:
        points: (N, 3) coordinates (any units).
        scores: (N,) or (N, C) values; the output keeps their dtype/device and gradient.
        sigma: Kernel width in the units of ``points``; None = 4 point spacings.
        k: Neighbours per point (the point itself included).
        spacing: ``point_spacing(points)`` if the caller has it already (it costs a pass over the
            points); None = computed here.
        plan: :func:`smoothing_plan` of these points and this kernel, if made already (then
            ``sigma``, ``k`` and ``spacing`` are not used).

    Returns:
        Smoothed scores, same shape as ``scores``. A constant field stays constant.
    """
    n = check_shape(points, "N 3", name="points")["N"]
    if scores.shape[:1] != (n,) or scores.dim() not in (1, 2):
        raise ShapeError(f"scores must have shape ({n},) or ({n}, C), got {tuple(scores.shape)}")
    if plan is None:
        plan = smoothing_plan(points, sigma=sigma, k=k, spacing=spacing)
    elif plan.order.shape != (n,):
        raise ShapeError(f"plan must be made for {n} points, got one for {plan.order.shape[0]}")
    device = scores.device
    order, rank = plan.order.to(device), plan.rank.to(device)
    idx_t, w_t = plan.index.to(device), plan.weights.to(device, scores.dtype)
    out = scores.reshape(n, -1)[order]
    for _ in range(plan.passes):  # fused weighted gather-sum, no (N, k, C) temporary
        out = F.embedding_bag(idx_t, out, per_sample_weights=w_t, mode="sum")
    return out[rank].reshape(scores.shape)


@dataclass(frozen=True)
class SmoothingPlan:
    """What :func:`smooth_point_scores` needs of a cloud besides the scores (its neighbours).

    It depends on the points and the kernel only, so it can be made ahead, e.g. in a loader
    worker while the previous batch is scored, and applied to any number of score maps.

    Attributes:
        order, rank: int64 (N,) the Z order of the points and its inverse.
        index: int32 (N, k) neighbours, in Z order; ``weights`` float64 (N, k) their kernel weights.
        passes: Rounds of the one-spacing kernel.
    """

    order: torch.Tensor
    rank: torch.Tensor
    index: torch.Tensor
    weights: torch.Tensor
    passes: int


def smoothing_plan(
    points: torch.Tensor,
    *,
    sigma: float | None = None,
    k: int = SMOOTH_NEIGHBOURS,
    spacing: float | None = None,
) -> SmoothingPlan:
    """The neighbours and weights :func:`smooth_point_scores` uses (arguments as there).

    Points with a zero spacing or kernel get the identity (one neighbour, itself, weight 1).
    """
    n = check_shape(points, "N 3", name="points")["N"]
    if spacing is None:
        spacing = point_spacing(points.detach()) if n >= 2 else 0.0
    if sigma is None:
        sigma = DEFAULT_SIGMA_SPACINGS * spacing
    if n < 2 or sigma <= 0 or spacing <= 0:
        identity = torch.arange(n, device=points.device)
        return SmoothingPlan(identity, identity, identity.to(torch.int32)[:, None],
                             torch.ones(n, 1, dtype=torch.float64, device=points.device), 0)  # fmt: skip
    step = min(sigma, PASS_SIGMA_SPACINGS * spacing)
    passes = min(MAX_PASSES, math.ceil((sigma / step) ** 2 - 1e-9))
    if neighbour_backend(points.device) == "torch":
        order, idx_t, w_t = _neighbour_weights_torch(points, k, step, spacing)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=order.device)
    else:
        order_np, idx_t, w_t = _neighbour_weights_scipy(points, k, step)
        order = torch.from_numpy(order_np)
        rank = torch.from_numpy(inverse_permutation(order_np))
    return SmoothingPlan(order, rank, idx_t.to(torch.int32), w_t.to(torch.float64), passes)


def _neighbour_weights_scipy(
    points: torch.Tensor, k: int, step: float
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Z order, neighbours (N, k) in it and their kernel weights (float64), by cKDTree (CPU)."""
    cloud = points.detach().cpu().to(torch.float64).numpy()
    n = cloud.shape[0]
    # Work on the cloud in Z order (near in space = near in memory), then map back: the same
    # neighbours as in input order (up to a choice among equally distant ones), without random
    # memory access (see .neighbours).
    order = spatial_order(cloud)
    cloud = cloud[order]
    dist, idx = cKDTree(cloud).query(cloud, k=min(k, n), workers=search_workers())
    idx_t = torch.from_numpy(idx.reshape(n, -1))
    del idx
    weights = dist.reshape(n, -1)  # exp(-(d / step)^2 / 2), normalised; in place (memory)
    weights /= step
    weights *= weights
    weights *= -0.5
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return order, idx_t, torch.from_numpy(weights)


def _neighbour_weights_torch(
    points: torch.Tensor, k: int, step: float, spacing: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`_neighbour_weights_scipy`, by :func:`.knn.knn` on the points' device."""
    cloud = points.detach().to(torch.float64)
    order = spatial_order_tensor(cloud)
    cloud = cloud[order]
    n = cloud.shape[0]
    reach = SEARCH_CELL_SCALE * math.sqrt(min(k, n) / math.pi) * spacing
    dist, idx = knn(cloud, cloud, min(k, n), cell=reach)
    weights = dist.div_(step).square_().mul_(-0.5).exp_()
    return order, idx, weights.div_(weights.sum(dim=1, keepdim=True))


def _reflect_index(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a half-sample-symmetric ('reflect') padding of ``radius`` on both sides."""
    i = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(i >= size, 2 * size - 1 - i, i)


def smooth_grid_scores(
    grid: torch.Tensor, sigma: float = GRID_SIGMA, *, truncate: float = GRID_TRUNCATE
) -> torch.Tensor:
    """Separable Gaussian blur of (..., H, W) maps, as ``scipy.ndimage.gaussian_filter``.

    Args:
        grid: (..., H, W) float maps (e.g. scores scattered onto the organised grid).
        sigma: Standard deviation in pixels (reference: 4).
        truncate: Kernel radius in standard deviations.

    Returns:
        Blurred maps, same shape, dtype and device, differentiable.
    """
    if grid.dim() < 2:
        raise ShapeError(f"grid must have shape (..., H, W), got {tuple(grid.shape)}")
    if sigma <= 0:
        return grid.clone()
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=grid.dtype, device=grid.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    h, w = grid.shape[-2:]
    out = grid.reshape(-1, 1, h, w)
    out = out.index_select(3, _reflect_index(w, radius, grid.device))
    out = F.conv1d(out.reshape(-1, 1, w + 2 * radius), kernel).view(-1, 1, h, w)
    out = out.transpose(2, 3).index_select(3, _reflect_index(h, radius, grid.device))
    out = F.conv1d(out.reshape(-1, 1, h + 2 * radius), kernel).view(-1, 1, w, h).transpose(2, 3)
    return out.reshape(grid.shape)
