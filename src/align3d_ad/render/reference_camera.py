"""The reference renders' camera: Open3D's default view fit and its pinhole (REFERENCE.md §2).

A perspective pinhole with a 60° field of view fitted to each view: it looks along -z at the
centre of the rotated cloud's axis-aligned box from distance ``zoom / tan 30° · E = 1.2124 E``
(E = the box's largest extent), ``f = (W/2) / tan 30°``, principal point ``W/2 - 0.5``;
Eyecandies then backs off in steps of 0.005 (at least one) until every point projects inside.
"""

from __future__ import annotations

import math

import torch

#: Open3D's default field of view and zoom (the fit distance is zoom / tan(fov / 2) x extent).
FOV_DEGREES = 60.0
ZOOM = 0.7


def focal_length(window: int, fov_degrees: float = FOV_DEGREES) -> float:
    """Pinhole focal length in pixels: (W / 2) / tan(fov / 2) (886.81 at 1024, 897.20 at 1036)."""
    return (window / 2.0) / math.tan(math.radians(fov_degrees) / 2.0)


def fit_camera(rotated: torch.Tensor, *, zoom: float = ZOOM, fov_degrees: float = FOV_DEGREES):
    """Open3D's default fit to (V, N, 3) rotated clouds: box centre (V, 3) and distance (V,)."""
    lo, hi = rotated.amin(dim=1), rotated.amax(dim=1)
    extent = (hi - lo).amax(dim=1)
    return (lo + hi) / 2, zoom / math.tan(math.radians(fov_degrees) / 2.0) * extent, extent


def project_window(rotated, centre, distance, window: int, fov_degrees: float = FOV_DEGREES):
    """Window pixels (V, N, 2) (OpenCV: x right, y down, centres at integers) and depth (V, N)."""
    f = focal_length(window, fov_degrees)
    rel = rotated - centre[:, None]
    depth = distance[:, None] - rel[..., 2]
    pp = window / 2.0 - 0.5
    uv = torch.stack((f * rel[..., 0] / depth + pp, -f * rel[..., 1] / depth + pp), dim=-1)
    return uv, depth


def back_off(rotated, centre, distance, window: int, step: float, fov: float = FOV_DEGREES):
    """Eyecandies: the distance + k * step, k >= 1 the fewest steps that keep every point inside."""
    f, pp = focal_length(window, fov), window / 2.0 - 0.5
    rel = rotated - centre[:, None]
    # u in [0, W): f x / (d - z) + pp >= 0 and < W, likewise v with -y; solve each for d
    need = []
    for lateral in (rel[..., 0], -rel[..., 1]):
        pos = lateral.clamp_min(0) * f / (window - pp) + rel[..., 2]
        neg = (-lateral).clamp_min(0) * f / pp + rel[..., 2]
        need += [pos.amax(dim=1), neg.amax(dim=1)]
    minimum = torch.stack(need).amax(dim=0)
    k = torch.ceil((minimum - distance) / step + 1e-9).clamp_min(1)
    return distance + k * step


__all__ = [
    "FOV_DEGREES",
    "ZOOM",
    "back_off",
    "fit_camera",
    "focal_length",
    "project_window",
]
