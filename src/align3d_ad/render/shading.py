"""Screen-space normals and Lambertian shading of the depth buffer (METHOD.md §2).

Choice: normals come from the rendered depth buffer, not from a kNN PCA per point. The depth
buffer is already there, its cost is ``O(pixels)`` (a few dozen vectorised image operations) instead
of a kNN over every point (about 1 s for 200k points on two CPU cores), it needs no orientation
step (a depth-buffer normal always faces the camera), and it shades exactly what is seen.

The two failure modes of screen-space normals are handled by one edge-aware neighbour test: a
neighbour pixel takes part only if it is covered (not a hole, not background) and its depth is
within the visibility tolerance (per pixel of offset) of the centre pixel's depth, so silhouettes and
depth jumps never mix two surfaces (no dark rims, no speckle). Splats have constant depth, so a
sparse cloud's depth buffer is a staircase; it is smoothed first by ``ceil(max(r, 1.5)^2)`` passes of an
edge-aware 3 x 3 mean over symmetric neighbour pairs (a Gaussian of width ~ the splat radius r that
keeps planes planar up to outlines and jumps), then differentiated with central differences
(one-sided where one neighbour fails the test, flat where both do).
"""

from __future__ import annotations

import math

import torch

from .camera import RenderSettings

#: The four "forward" neighbour offsets (dy, dx); their opposites are the other four neighbours.
EDGE_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Smoothing width floor in pixels: dense clouds (r < 1) alias with the pixel grid (the nearest of
#: several points per pixel), which a width of ~1.5 px (3 passes) removes.
MIN_SMOOTH_RADIUS = 1.5
#: Upper bound on the edge-aware smoothing passes (splat radius <= 8 px gets ceil(r^2)).
MAX_SMOOTH_PASSES = 64


def _pad1(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad the last two dimensions by one pixel."""
    out = x.new_zeros((*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2))
    out[..., 1:-1, 1:-1] = x
    return out


def _shifted(padded: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """View of a 1-pixel-padded (..., S+2, S+2) stack shifted so [i, j] holds [i + dy, j + dx]."""
    s_h, s_w = padded.shape[-2] - 2, padded.shape[-1] - 2
    return padded[..., 1 + dy : 1 + dy + s_h, 1 + dx : 1 + dx + s_w]


def surface_edges(
    depth: torch.Tensor, covered: torch.Tensor, tolerance: float
) -> dict[tuple[int, int], torch.Tensor]:
    """Edge-aware links between neighbouring pixels.

    Args:
        depth: (..., S, S) depth, any finite value where not covered.
        covered: (..., S, S) bool, pixels showing a point.
        tolerance: Largest depth step between neighbours one pixel apart on one surface.

    Returns:
        offset o -> 1-pixel-padded (..., S+2, S+2) float map, 1 at p when p and p + o are both
        covered and on one surface (the link to p - o is the shifted map at p - o).
    """
    d_pad, c_pad = _pad1(depth), _pad1(covered)
    edges = {}
    for dy, dx in EDGE_OFFSETS:
        step = tolerance * math.hypot(dy, dx)
        link = (_shifted(d_pad, dy, dx) - depth).abs_() <= step
        link &= _shifted(c_pad, dy, dx)
        link &= covered
        edges[(dy, dx)] = _pad1(link.to(depth.dtype))
    return edges


def _links(edges, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Links of every pixel to p + o and to p - o (both (..., S, S))."""
    e = edges[(dy, dx)]
    return _shifted(e, 0, 0), _shifted(e, -dy, -dx)


def smooth_depth(depth: torch.Tensor, edges, passes: int) -> torch.Tensor:
    """``passes`` rounds of an edge-aware 3 x 3 mean of ``depth`` (..., S, S).

    Neighbours enter in opposite pairs, a pair only when both links hold. The mean of
    ``f(p + o)`` and ``f(p - o)`` is ``f(p)`` for a linear ``f``, so a plane stays exactly a plane
    up to its outline and next to depth jumps (a one-sided mean would flatten it there: a rim).
    """
    pairs = []
    for dy, dx in EDGE_OFFSETS:
        fwd, bwd = _links(edges, dy, dx)
        pairs.append(((dy, dx), fwd * bwd))
    count = 1.0 + 2.0 * sum(w for _, w in pairs)
    out = depth
    for _ in range(passes):
        padded = _pad1(out)
        acc = out.clone()
        for (dy, dx), w in pairs:
            acc.addcmul_(w, _shifted(padded, dy, dx) + _shifted(padded, -dy, -dx))
        out = acc.div_(count)
    return out


def depth_gradients(
    depth: torch.Tensor, edges, covered: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-aware d(depth)/d(column) and d(depth)/d(row) per pixel, in depth units per pixel.

    Central differences where both neighbours are linked, one-sided where one is. A pixel linked
    to neither neighbour along an axis (a sliver of a surface steeper than the tolerance allows,
    e.g. a wall seen at a grazing angle) takes the smaller one-sided difference to a covered
    neighbour: steep, not flat (a flat normal would be a bright speckle); 0 if none is covered.
    """
    padded, c_pad = _pad1(depth), _pad1(covered)
    grads = []
    for dy, dx in ((0, 1), (1, 0)):
        w_f, w_b = _links(edges, dy, dx)
        fwd = _shifted(padded, dy, dx) - depth
        bwd = depth - _shifted(padded, -dy, -dx)
        linked = (w_f * fwd + w_b * bwd) / (w_f + w_b).clamp_min(1.0)
        fwd = fwd.masked_fill(~_shifted(c_pad, dy, dx), torch.inf)
        bwd = bwd.masked_fill(~_shifted(c_pad, -dy, -dx), torch.inf)
        sliver = torch.where(fwd.abs() <= bwd.abs(), fwd, bwd).nan_to_num_(0.0, 0.0, 0.0)
        grads.append(torch.where((w_f + w_b) > 0, linked, sliver))
    return grads[0], grads[1]


def shade_depth(
    depth: torch.Tensor, settings: RenderSettings, *, radius: float, tolerance: float
) -> torch.Tensor:
    """Grey Lambertian image of a depth buffer.

    Args:
        depth: (..., S, S) depth per pixel, ``+inf`` where empty.
        settings: Render settings (projection, light, ambient, albedo, background).
        radius: Splat radius in pixels (sets the smoothing width).
        tolerance: Depth tolerance between neighbouring pixels of one surface (scene units).

    Returns:
        (..., S, S) grey levels in [0, 1]; ``settings.background`` where empty.
    """
    covered = torch.isfinite(depth)
    d = torch.where(covered, depth, torch.zeros_like(depth))
    edges = surface_edges(d, covered, tolerance)
    passes = min(math.ceil(max(radius, MIN_SMOOTH_RADIUS) ** 2), MAX_SMOOTH_PASSES)
    smooth = smooth_depth(d, edges, passes)
    gx, gy = depth_gradients(smooth, edges, covered)
    # Scene units per pixel; perspective pixels grow with depth.
    pixel = 1.0 / settings.pixels_per_unit
    if settings.projection == "perspective":
        pixel = smooth * (pixel / settings.camera_distance)
    nx, ny = gx / pixel, -gy / pixel
    norm = math.sqrt(sum(c * c for c in settings.light_direction))
    lx, ly, lz = (c / norm for c in settings.light_direction)
    lambert = (nx * lx + ny * ly + lz) / torch.sqrt(nx * nx + ny * ny + 1.0)
    grey = settings.albedo * (settings.ambient + (1.0 - settings.ambient) * lambert.clamp_min(0.0))
    return torch.where(covered, grey, torch.full_like(grey, settings.background))
