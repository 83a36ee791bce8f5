"""Batched z-buffer point splatting: which point each pixel shows (METHOD.md §2).

One pass over all (points x views) of all samples: every (point, view) pair writes the key
``(depth bits << 32) | point index`` to the pixel holding its projection with ``scatter_reduce``
``amin``. Non-negative float32 values order like their IEEE-754 bit patterns read as integers, so the
key orders by exact float32 depth first and by point index second: the nearest point wins and ties
go to the lowest index, deterministically, on CPU and CUDA alike (integer min has no rounding).

Splats: a point covers the pixels whose centres lie within the splat radius ``r`` of the centre of
its own pixel. Because every point of a pixel shares that centre, splatting all points equals
splatting the winner of each pixel only; so the splat pass is a min-filter of the key image over a
disc of radius ``r`` (one vectorised ``minimum`` per disc offset over the whole image stack). Its
cost is ``O(pixels x r^2)``, independent of the number of points: dense clouds get ``r < 1`` (no
filter at all), sparse clouds are cheap to splat because they have few points elsewhere.

Gaps: randomly sampled surfaces leave occasional pixels uncovered, or covered only by a farther
surface that then shows through the front one (a speckle of wrong depth, colour and visibility).
:func:`close_gaps` gives such pixels (nearer surface on two opposite sides) their nearest
neighbour's key, so the splat radius can stay small (sharp images) without holes.
"""

from __future__ import annotations

import math

import torch

#: Key of an empty pixel: depth bits of +inf (0x7F800000), index bits all ones. Larger than any
#: real key (finite depths), and its depth half decodes to +inf.
EMPTY_KEY = (0x7F800000 << 32) | 0xFFFFFFFF
#: Mask of the point-index half of a key.
INDEX_MASK = 0xFFFFFFFF


def depth_keys(depth: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Integer keys ordering by float32 depth, then by ``index``.

    Args:
        depth: (...) non-negative depths (any float dtype; compared at float32 precision).
        index: (...) int64 point indices in [0, 2^32), broadcastable to ``depth``.

    Returns:
        int64 (...) keys.
    """
    bits = (depth.to(torch.float32).clamp_min(0.0) + 0.0).view(torch.int32).to(torch.int64)
    return (bits << 32) | index


def disc_offsets(radius: float) -> list[tuple[int, int]]:
    """Integer offsets (dy, dx) != (0, 0) with ``dy^2 + dx^2 <= radius^2``, in a fixed order."""
    reach = int(math.floor(radius + 1e-9))
    return [
        (dy, dx)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if (dy or dx) and dy * dy + dx * dx <= radius * radius + 1e-9
    ]


def zbuffer(keys: torch.Tensor, pixel: torch.Tensor, num_pixels: int) -> torch.Tensor:
    """Minimum key per pixel.

    Args:
        keys: int64 (M,) keys of all (point, view) pairs.
        pixel: int64 (M,) flat pixel index of each pair into the (B * V * S * S) image stack.
        num_pixels: B * V * S * S.

    Returns:
        int64 (num_pixels,) winning key per pixel, ``EMPTY_KEY`` where nothing landed.
    """
    buffer = torch.full((num_pixels,), EMPTY_KEY, dtype=torch.int64, device=keys.device)
    return buffer.scatter_reduce_(0, pixel, keys, reduce="amin", include_self=True)


def dilate_keys(keys: torch.Tensor, radius: float) -> torch.Tensor:
    """Min-filter key images (..., S, S) over a disc of ``radius`` pixels (the splat footprint)."""
    offsets = disc_offsets(radius)
    if not offsets:
        return keys
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    s_h, s_w = keys.shape[-2:]
    padded = keys.new_full((*keys.shape[:-2], s_h + 2 * reach, s_w + 2 * reach), EMPTY_KEY)
    padded[..., reach : reach + s_h, reach : reach + s_w] = keys
    out = keys.clone()
    for dy, dx in offsets:
        window = padded[..., reach + dy : reach + dy + s_h, reach + dx : reach + dx + s_w]
        torch.minimum(out, window, out=out)
    return out


def decode_keys(keys: torch.Tensor) -> torch.Tensor:
    """Point index (within its sample) of each key, -1 for ``EMPTY_KEY``."""
    return (keys & INDEX_MASK).masked_fill_(keys == EMPTY_KEY, -1)


def key_depth(keys: torch.Tensor) -> torch.Tensor:
    """float32 depth encoded in keys (``+inf`` for ``EMPTY_KEY``)."""
    return (keys >> 32).to(torch.int32).view(torch.float32)


#: Pairs of opposite 8-neighbours (dy, dx).
OPPOSITE_PAIRS = (((0, -1), (0, 1)), ((-1, 0), (1, 0)), ((-1, -1), (1, 1)), ((-1, 1), (1, -1)))
#: Gap-closing passes (each closes gaps one pixel wider on two sides).
GAP_PASSES = 2


def _pad1(x: torch.Tensor, value) -> torch.Tensor:
    """Pad the last two dimensions of ``x`` by one pixel of ``value``."""
    out = x.new_full((*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2), value)
    out[..., 1:-1, 1:-1] = x
    return out


def close_gaps(keys: torch.Tensor, tolerance: float, *, passes: int = GAP_PASSES) -> torch.Tensor:
    """Close one-pixel gaps between splats in key images (..., S, S).

    A pixel is a gap when the neighbours on two opposite sides (left/right, up/down or a diagonal)
    are both nearer than it by more than ``tolerance``: an empty pixel inside the surface, or a
    pixel where a farther, hidden surface shows through the front surface. It takes the nearest of
    its 8 neighbours. Silhouettes do not grow: outside a convex outline no pixel has the surface on
    two opposite sides. The test runs on float32 depth over the whole stack; the 8-neighbour
    minimum only at the (few) gap pixels.
    """
    s_h, s_w = keys.shape[-2:]
    offsets = torch.tensor(
        [dy * (s_w + 2) + dx for pair in OPPOSITE_PAIRS for dy, dx in pair], device=keys.device
    )
    for _ in range(passes):
        depth = _pad1(key_depth(keys), torch.inf)
        centre = depth[..., 1:-1, 1:-1] - tolerance
        gap = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
        for (ay, ax), (by, bx) in OPPOSITE_PAIRS:
            near_a = depth[..., 1 + ay : 1 + ay + s_h, 1 + ax : 1 + ax + s_w] < centre
            gap |= near_a & (depth[..., 1 + by : 1 + by + s_h, 1 + bx : 1 + bx + s_w] < centre)
        flat = gap.view(-1).nonzero().squeeze(1)
        if flat.numel() == 0:
            break
        image, rest = flat // (s_h * s_w), flat % (s_h * s_w)
        centre_idx = (
            image * ((s_h + 2) * (s_w + 2)) + (rest // s_w + 1) * (s_w + 2) + rest % s_w + 1
        )
        neighbours = _pad1(keys, EMPTY_KEY).view(-1)[centre_idx[:, None] + offsets]
        keys = keys.clone()
        keys.view(-1)[flat] = neighbours.amin(dim=1)
    return keys
