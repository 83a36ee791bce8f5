"""2D signed-distance footprints and height profiles for the synthetic shapes.

Every synthetic object is a height field ``h(u, v) >= 0`` over the plane it lies on (metres): 0 off the
object, positive on it, continuous (steep bevels instead of vertical walls), so the top view is a
smooth organised scan and the closed surface ``{z = h} U {z = -k h}`` is watertight (Real3D format).
Signed distances are negative inside a footprint. All functions broadcast over array shapes.
"""

from __future__ import annotations

import numpy as np

HEX_K = (-0.8660254037844386, 0.5, 0.5773502691896258)  # (-cos 30, sin 30, tan 30), iq's hexagon


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic ease ``3t^2 - 2t^3`` of ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def plateau(sdf: np.ndarray, height: float, bevel: float) -> np.ndarray:
    """Flat-topped profile: ``height`` inside the footprint, falling to 0 over ``bevel`` at its rim."""
    return height * smoothstep(-sdf / bevel)


def sdf_disc(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance to a disc of ``radius`` centred at the origin."""
    return np.hypot(u, v) - radius


def sdf_round_rect(
    u: np.ndarray, v: np.ndarray, half_u: float, half_v: float, corner: float
) -> np.ndarray:
    """Signed distance to a rectangle of half sizes (half_u, half_v) with rounded corners."""
    qu = np.abs(u) - half_u + corner
    qv = np.abs(v) - half_v + corner
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    inside = np.minimum(np.maximum(qu, qv), 0.0)
    return outside + inside - corner


def sdf_hexagon(u: np.ndarray, v: np.ndarray, apothem: float) -> np.ndarray:
    """Signed distance to a regular hexagon with inner radius ``apothem`` (flat sides along u)."""
    kx, ky, kz = HEX_K
    pu, pv = np.abs(u), np.abs(v)
    dot = np.minimum(kx * pu + ky * pv, 0.0)
    pu = pu - 2.0 * dot * kx
    pv = pv - 2.0 * dot * ky
    pu = pu - np.clip(pu, -kz * apothem, kz * apothem)
    pv = pv - apothem
    return np.hypot(pu, pv) * np.sign(pv)


def segment_distance(u: np.ndarray, v: np.ndarray, half_length: float) -> np.ndarray:
    """Distance to the segment from (-half_length, 0) to (half_length, 0)."""
    return np.hypot(np.maximum(np.abs(u) - half_length, 0.0), v)


def polyline_distance(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Distance from (u, v) to the polyline through ``vertices`` (K, 2); loops over the K-1 segments."""
    best = np.full(np.shape(u), np.inf)
    for a, b in zip(vertices[:-1], vertices[1:]):
        ab = b - a
        t = ((u - a[0]) * ab[0] + (v - a[1]) * ab[1]) / max(float(ab @ ab), 1e-18)
        t = np.clip(t, 0.0, 1.0)
        best = np.minimum(best, np.hypot(u - a[0] - t * ab[0], v - a[1] - t * ab[1]))
    return best


def rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of (u, v) in a frame rotated by ``angle`` (radians) about the origin."""
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v
