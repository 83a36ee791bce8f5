"""Back-projection of per-view maps to points (METHOD.md §6).

A point's value in a view is the map sampled bilinearly at the point's sub-pixel position; its value
is the mean over the views in which it is visible (Fix: the reference samples the nearest pixel).
Points visible in no view take the mean of their k nearest visible neighbours in 3D (Fix: the
reference borrows by array index, meaningless for unorganised clouds).

Sampling is an explicit bilinear gather over the packed (point, view) pairs, numerically the same
as ``grid_sample(mode="bilinear", padding_mode="border", align_corners=False)`` (the pixel
convention of :mod:`.camera`), but without padding every sample to the largest point count. It
is differentiable w.r.t. the maps (the gather's backward is a scatter-add). Maps may have any
resolution H x W: positions are rescaled, so sampling 24 x 24 patch maps gives the continuous
bilinear (``align_corners=False``) upsampling of the map at each point's exact position, without
building the S x S map (``F.interpolate`` to S x S holds the same values at S-pixel centres).

The taps (4 flat indices and weights per (point, view), visibility and the view mean folded into
the weights) and the neighbour search for hidden points (cKDTree on CPU, no gradient) are computed
once per rendering and map size and cached on the :class:`Rendering` (about 36 x 12 bytes per point
for 9 views), so a training step pays for one gather and one contraction.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from .._checks import check_shape
from ..errors import ShapeError
from .rendering import Rendering

#: Nearest visible neighbours averaged for a point no view sees.
FILL_NEIGHBOURS = 8


def bilinear_taps(
    rendering: Rendering, h: int, w: int, *, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat map indices and weights of the 4 bilinear taps of every (point, view) pair.

    Args:
        rendering: The rendering (its ``pixel_coords`` (T, V, 2)).
        h, w: Map resolution; positions are rescaled from the S x S image to H x W.
        dtype, device: Of the weights (the maps').

    Returns:
        ``index`` int64 (T, V * 4) into the flattened (B * V * H * W) map plane and ``weight``
        (T, V * 4); taps of pair (t, v) sit at ``v * 4 : v * 4 + 4``.
    """
    size, n_v = rendering.image_size, rendering.num_views
    # Continuous pixel coordinates -> index space of the H x W map (pixel centres at integers),
    # clamped like grid_sample's border padding. Few, mostly in-place passes: this runs per render.
    scale = torch.tensor([w / size, h / size], dtype=dtype, device=device)
    grid = (rendering.pixel_coords.to(device, dtype) * scale).sub_(0.5).clamp_(min=0.0)
    grid[..., 0].clamp_(max=w - 1)
    grid[..., 1].clamp_(max=h - 1)
    corner = grid.floor()
    frac = grid.sub_(corner)  # (T, V, 2) fractional parts
    corner = corner.long()
    step = corner < torch.tensor([w - 1, h - 1], device=device)  # a right / lower tap exists
    base = torch.arange(n_v, device=device) * (h * w)
    if rendering.num_samples > 1:
        base = rendering.batch_index.to(device)[:, None] * (n_v * h * w) + base
    index = torch.empty((*frac.shape[:2], 4), dtype=torch.int64, device=device)
    torch.add(corner[..., 1] * w + corner[..., 0], base, out=index[..., 0])
    torch.add(index[..., 0], step[..., 0], out=index[..., 1])
    torch.add(index[..., 0], step[..., 1] * w, out=index[..., 2])
    torch.add(index[..., 2], step[..., 0], out=index[..., 3])
    fx, fy = frac[..., 0], frac[..., 1]
    gx, gy = 1.0 - fx, 1.0 - fy
    weight = torch.empty((*frac.shape[:2], 4), dtype=dtype, device=device)
    torch.mul(gx, gy, out=weight[..., 0])
    torch.mul(fx, gy, out=weight[..., 1])
    torch.mul(gx, fy, out=weight[..., 2])
    torch.mul(fx, fy, out=weight[..., 3])
    return index.flatten(1), weight.flatten(1)


def _gather_taps(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values (C, T, V * 4) of maps (B, V, C, H, W) at flat tap indices (T, V * 4)."""
    n_c = maps.shape[2]
    flat = maps.transpose(0, 2).transpose(1, 2).reshape(n_c, -1)  # (C, B * V * H * W)
    return flat.index_select(1, index.reshape(-1)).view(n_c, *index.shape)


def sample_maps(maps: torch.Tensor, rendering: Rendering) -> torch.Tensor:
    """Bilinear samples of ``maps`` (B, V, C, H, W) at every point's position: (T, V, C)."""
    n_b, n_v, n_c, h, w = maps.shape
    index, weight = bilinear_taps(rendering, h, w, dtype=maps.dtype, device=maps.device)
    values = _gather_taps(maps, index).view(n_c, -1, n_v, 4)
    return torch.einsum("ctvk,tvk->tvc", values, weight.view(-1, n_v, 4))


def hidden_neighbours(
    rendering: Rendering, k: int = FILL_NEIGHBOURS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed rows of the points visible in no view, their k nearest visible neighbours, weights.

    Returns:
        ``hidden`` int64 (H,) and ``neighbours`` int64 (H, k) packed rows, and ``weights`` (H, k):
        1 / k' for the k' = min(k, visible points of the sample) real neighbours, 0 for padding.
        Cached on the rendering.
    """
    key = ("hidden_neighbours", k)
    if key in rendering.cache:
        return rendering.cache[key]
    seen = rendering.visible.any(dim=1).cpu().numpy()
    points = rendering.points.detach().cpu().numpy()
    hidden_rows, neighbour_rows, weight_rows = [], [], []
    for b in range(rendering.num_samples):
        part = rendering.sample_slice(b)
        rows = np.arange(part.start, part.stop)
        vis, hid = rows[seen[rows]], rows[~seen[rows]]
        if hid.size == 0:
            continue
        kk = min(k, vis.size)
        _, nn = cKDTree(points[vis]).query(points[hid], k=kk)
        nn = vis[nn.reshape(hid.size, kk)]
        pad = np.repeat(nn[:, :1], k - kk, axis=1)
        weights = np.concatenate(
            [np.full((hid.size, kk), 1.0 / kk), np.zeros((hid.size, k - kk))], 1
        )
        hidden_rows.append(hid)
        neighbour_rows.append(np.concatenate([nn, pad], axis=1))
        weight_rows.append(weights)
    device = rendering.points.device
    hidden = torch.zeros(0, dtype=torch.int64, device=device)
    neighbours = torch.zeros((0, k), dtype=torch.int64, device=device)
    weights = torch.zeros((0, k), dtype=torch.float64, device=device)
    if hidden_rows:
        hidden = torch.from_numpy(np.concatenate(hidden_rows)).to(device)
        neighbours = torch.from_numpy(np.concatenate(neighbour_rows)).to(device)
        weights = torch.from_numpy(np.concatenate(weight_rows)).to(device)
    rendering.cache[key] = (hidden, neighbours, weights)
    return hidden, neighbours, weights


def back_project(
    maps: torch.Tensor, rendering: Rendering, *, fill_neighbours: int = FILL_NEIGHBOURS
) -> list[torch.Tensor]:
    """Per-point values from per-view maps: bilinear sample, mean over visible views, kNN fill.

    Args:
        maps: (B, V, C, H, W) per-view maps (any H x W; usually S x S or the patch grid).
        rendering: The rendering the maps belong to (B samples, V views).
        fill_neighbours: k of the nearest-visible-neighbour fill for points no view sees.

    Returns:
        B tensors (N_i, C), differentiable w.r.t. ``maps``.
    """
    dims = check_shape(maps, "B V C H W", name="maps")
    if dims["B"] != rendering.num_samples or dims["V"] != rendering.num_views:
        raise ShapeError(
            f"maps must have B={rendering.num_samples} samples and V={rendering.num_views} views "
            f"(the rendering's), got shape {tuple(maps.shape)}"
        )
    key = ("back_project_taps", dims["H"], dims["W"], maps.dtype, maps.device)
    if key not in rendering.cache:  # bilinear weight x visible / number of visible views
        index, weight = bilinear_taps(
            rendering, dims["H"], dims["W"], dtype=maps.dtype, device=maps.device
        )
        vis = rendering.visible.to(maps.device, maps.dtype)
        share = vis / vis.sum(dim=1, keepdim=True).clamp_min(1.0)
        weight = weight.view(*share.shape, 4).mul_(share.unsqueeze(-1)).view_as(index)
        rendering.cache[key] = (index, weight)
    index, weight = rendering.cache[key]
    point = torch.einsum("ctk,tk->tc", _gather_taps(maps, index), weight)
    hidden, neighbours, weights = hidden_neighbours(rendering, fill_neighbours)
    if hidden.numel():
        fill = (point[neighbours] * weights.to(maps.dtype).unsqueeze(-1)).sum(dim=1)
        point = point.index_copy(0, hidden, fill)
    return rendering.split(point)
