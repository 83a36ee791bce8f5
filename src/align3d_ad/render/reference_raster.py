"""The reference renders' image formation: square points, Phong headlights, 8-bit capture.

Points are squares of ``point_size`` window pixels (every pixel whose centre lies in the square),
the nearest fragment wins, ties to the lower point index (a z-buffer over the window). Shading is
Open3D's default Phong set: lights at the box centre ± 2 E along the view axis (two at each,
diffuse 0.66, specular 0.2, shininess 100, no ambient), grey 0.7. Captures are 8-bit (truncated)
and resized to the image size with antialiased bicubic (REFERENCE.md §2).

The square z-buffer works on depth *ranks*: each view's points are ordered by (depth, index) once,
each square's top-left anchor pixel keeps the smallest rank that lands on it (one scatter), and a
pixel's winner is the smallest rank over the ``size x size`` anchors that cover it, a separable
min filter on int32 ranks (``O(log size)`` elementwise passes per axis). Cost: one sort of the
points and ``O(W^2 log size)`` elementwise work, the same torch code on CPU and CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .splat import depth_keys

#: Open3D's default Phong set (RenderOption): light offsets along the view axis in extents, and
#: how many lights sit at each.
LIGHT_OFFSETS = (2.0, -2.0)
LIGHTS_PER_OFFSET = 2
DIFFUSE, SPECULAR, SHININESS, ALBEDO = 0.66, 0.2, 100.0, 0.7


def depth_order(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view (V, N): the points ordered by (float32 depth, index), and each point's int32 rank."""
    n_v, n = depth.shape
    keys = depth_keys(depth, torch.arange(n, device=depth.device)[None].expand(n_v, n))
    order = keys.argsort(dim=1)
    ranks = torch.arange(n, dtype=torch.int32, device=depth.device)[None].expand(n_v, n)
    return order, torch.empty(n_v, n, dtype=torch.int32, device=depth.device).scatter_(1, order, ranks)


def window_min(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """``out[j] = min(x[j .. j + size - 1])`` along ``dim`` (valid mode: ``size - 1`` shorter).

    Doubling: each pass halves the work left (windows of 2, 4, ...); two overlapping windows of
    the largest power of two <= ``size`` cover it. O(log size) elementwise passes, no copies.
    """
    span, cur = 1, x
    while 2 * span <= size:
        length = cur.shape[dim] - span
        cur = torch.minimum(cur.narrow(dim, 0, length), cur.narrow(dim, span, length))
        span *= 2
    rest = size - span
    if rest == 0:
        return cur
    length = cur.shape[dim] - rest
    return torch.minimum(cur.narrow(dim, 0, length), cur.narrow(dim, rest, length))


def square_zbuffer(uv: torch.Tensor, depth: torch.Tensor, size: int, window: int) -> torch.Tensor:
    """(V, W, W) winning point index per window pixel of squares of ``size`` pixels, -1 empty.

    ``uv`` (V, N, 2) window pixels (x right, y down, centres at integers), ``depth`` (V, N). The
    filter runs over the pixels the squares can reach (the anchors' box over all views) only.
    """
    n_v, n = depth.shape
    device = depth.device
    out = torch.full((n_v, window, window), -1, dtype=torch.int64, device=device)
    order, rank = depth_order(depth)
    anchor = torch.ceil(uv - size / 2.0).to(torch.int64)  # top-left covered pixel (x, y)
    inside = ((anchor > -size) & (anchor < window)).all(dim=-1)
    if not bool(inside.any()):
        return out
    # pixel j is covered by the anchors j - size + 1 .. j: the pixels lo .. hi + size - 1 can be
    lo = anchor[inside].amin(dim=0).clamp_min(0).tolist()
    hi = (anchor[inside].amax(dim=0) + size - 1).clamp_max(window - 1).tolist()
    (x0, y0), (x1, y1) = lo, hi
    # canvas cells: the anchors x0 - size + 1 .. x1 (likewise y), all that cover those pixels
    width, height = x1 - x0 + size, y1 - y0 + size
    cell = anchor - torch.tensor([x0, y0], device=device) + (size - 1)
    views = torch.arange(n_v, device=device)[:, None].expand(n_v, n)
    flat = (views * height + cell[..., 1]) * width + cell[..., 0]
    empty_rank = torch.iinfo(torch.int32).max
    canvas = torch.full((n_v * height * width,), empty_rank, dtype=torch.int32, device=device)
    canvas.scatter_reduce_(0, flat[inside], rank[inside], reduce="amin")
    # pixel x0 + m: the min over the cells m .. m + size - 1 (valid mode)
    best = window_min(window_min(canvas.view(n_v, height, width), size, 1), size, 2)
    empty = best == empty_rank
    winner = order.gather(1, best.masked_fill(empty, 0).reshape(n_v, -1).to(torch.int64))
    out[:, y0 : y1 + 1, x0 : x1 + 1] = winner.view(n_v, *best.shape[1:]).masked_fill_(empty, -1)
    return out


def resize_8bit(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float captures (..., W, W) in [0, 1] -> 8-bit (truncated) -> bicubic (antialiased) -> [0, 1]."""
    shape = images.shape
    q = torch.floor(images.clamp(0, 1) * 255.0).reshape(-1, 1, *shape[-2:])
    out = F.interpolate(q, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return (out.round().clamp(0, 255) / 255.0).reshape(*shape[:-2], size, size)


def phong_grey(rel_pos, normals, distance, extent) -> torch.Tensor:
    """Open3D's default Phong grey of every (view, point), in [0, 1].

    ``rel_pos`` (V, N, 3) positions relative to the box centre, ``normals`` (V, N, 3) unit,
    ``distance`` (V,) eye distance and ``extent`` (V,) box extent (the lights sit at ± 2 E).
    """
    eye = -rel_pos
    eye[..., 2] += distance[:, None]
    e = eye * eye.square().sum(-1, keepdim=True).rsqrt()
    # two-sided: a normal facing away from the eye is turned to face it (Open3D's Phong shader)
    normals = torch.where(((normals * e).sum(-1, keepdim=True) < 0), -normals, normals)
    total = torch.zeros(rel_pos.shape[:-1], dtype=rel_pos.dtype, device=rel_pos.device)
    for offset in LIGHT_OFFSETS:
        ld = -rel_pos
        ld[..., 2] += offset * extent[:, None]
        ld = ld * ld.square().sum(-1, keepdim=True).rsqrt()
        cos = (normals * ld).sum(-1)
        # reflection r = 2 (n.l) n - l, so e.r = 2 (n.l)(n.e) - l.e
        spec = (2 * cos * (normals * e).sum(-1) - (ld * e).sum(-1)).clamp(0, 1).pow(SHININESS)
        total += LIGHTS_PER_OFFSET * (ALBEDO * DIFFUSE * cos.clamp(0, 1) + SPECULAR * spec)
    return total.clamp(0, 1)


__all__ = ["depth_order", "phong_grey", "resize_8bit", "square_zbuffer", "window_min"]
