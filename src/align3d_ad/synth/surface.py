"""Closed 360-degree surfaces and partial scans with point defects (the Real3D-AD style).

A :class:`~align3d_ad.synth.shapes.Shape` height field ``h >= 0`` closes into a watertight surface
``{z = h} U {z = -k h}`` (top and a flatter bottom meeting where h = 0). Points are sampled uniformly
by area (weighted sampling without replacement of uniform candidates, weight = area element). A scan
keeps the points facing one viewing direction, like a single-view scanner, and may carry defects:
``bulge`` / ``sink`` (smooth displacement along the normals) and ``cut`` (a flat facet shaved off).
Every displacement is >= ``LABEL_FRACTION`` of its amplitude on labelled points and zero elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .defects import LABEL_FRACTION, MAX_TRIES
from .shapes import MIN_HEIGHT, Shape

BOTTOM_RATIO = 0.35  # the bottom surface is z = -BOTTOM_RATIO * h (a flatter underside)
CANDIDATES_PER_POINT = 12  # uniform candidates drawn per requested point
MAX_AREA_WEIGHT = 25.0  # caps the area element at vertical tangents (torus rims)
GRADIENT_STEP = 1e-5  # m, central-difference step of the height gradient
FACING_MIN = 0.3  # a defect centre must face the viewer at least this much (cosine)
SURFACE_KINDS = ("bulge", "sink", "cut")


@dataclass(frozen=True)
class SurfaceScan:
    """Points of a closed surface or of a partial scan (object frame, metres until posed).

    Attributes:
        points: (N, 3) float64 points.
        normals: (N, 3) outward unit normals.
        labels: (N,) bool anomalous points.
    """

    points: np.ndarray
    normals: np.ndarray
    labels: np.ndarray


def _gradient(shape: Shape, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = GRADIENT_STEP
    hu = (shape.height(u + step, v) - shape.height(u - step, v)) / (2 * step)
    hv = (shape.height(u, v + step) - shape.height(u, v - step)) / (2 * step)
    return hu, hv


def sample_surface(shape: Shape, count: int, rng: np.random.Generator) -> SurfaceScan:
    """``count`` points spread uniformly by area over the closed surface of ``shape``.

    Args:
        shape: The object instance (metres).
        count: Number of points.
        rng: Random generator (candidates and the weighted draw).

    Returns:
        Points (top and bottom surfaces), outward normals, all labels False.
    """
    radius = shape.bound_radius
    cand = rng.uniform(-radius, radius, (CANDIDATES_PER_POINT * count, 2))
    h = shape.height(cand[:, 0], cand[:, 1])
    on = h > MIN_HEIGHT
    u, v, h = cand[on, 0], cand[on, 1], h[on]
    hu, hv = _gradient(shape, u, v)
    k = BOTTOM_RATIO
    top = np.stack([-hu, -hv, np.ones_like(h)], axis=1)
    bottom = np.stack([-k * hu, -k * hv, -np.ones_like(h)], axis=1)
    normals = np.concatenate([top, bottom])
    area = np.minimum(np.linalg.norm(normals, axis=1), MAX_AREA_WEIGHT)
    if len(area) < count:
        raise ValueError(f"surface sampling must find {count} candidates, got {len(area)}")
    # Efraimidis-Spirakis: weighted draw without replacement = the largest log(U) / weight keys
    keys = np.log(rng.random(len(area))) / area
    pick = np.sort(np.argpartition(-keys, count - 1)[:count])
    points = np.concatenate([np.stack([u, v, h], 1), np.stack([u, v, -k * h], 1)])[pick]
    normals = normals[pick] / np.linalg.norm(normals[pick], axis=1, keepdims=True)
    return SurfaceScan(points, normals, np.zeros(count, dtype=bool))


def random_direction(rng: np.random.Generator) -> np.ndarray:
    """A unit vector uniform on the sphere."""
    d = rng.normal(size=3)
    return d / np.linalg.norm(d)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A (3, 3) rotation uniform on SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def visible_part(surface: SurfaceScan, view: np.ndarray) -> SurfaceScan:
    """The points whose normal faces the viewing direction ``view`` (from the object to the eye)."""
    keep = surface.normals @ view > 0.0
    return SurfaceScan(surface.points[keep], surface.normals[keep], surface.labels[keep])


def _pick_centre(scan: SurfaceScan, view: np.ndarray, rng: np.random.Generator) -> int:
    facing = np.flatnonzero(scan.normals @ view >= FACING_MIN)
    pool = facing if len(facing) else np.arange(len(scan.points))
    return int(pool[rng.integers(len(pool))])


def _displace(scan, view, rng, size: float, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Bulge (sign +1) or sink (-1): smooth displacement along the normals around a centre."""
    centre = scan.points[_pick_centre(scan, view, rng)]
    radius = size * rng.uniform(0.06, 0.12)
    weight = np.clip(1.0 - np.sum((scan.points - centre) ** 2, axis=1) / radius**2, 0.0, None) ** 2
    region = weight >= LABEL_FRACTION
    amplitude = sign * rng.uniform(0.0008, 0.002)
    return region, np.where(region[:, None], amplitude * weight[:, None] * scan.normals, 0.0)


def _cut(scan, view, rng, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat facet: points near a centre and above a plane sunk 1.5-3 mm under its tangent plane."""
    index = _pick_centre(scan, view, rng)
    centre, axis = scan.points[index], scan.normals[index]
    depth, reach = rng.uniform(0.0015, 0.003), size * rng.uniform(0.07, 0.12)
    above = (scan.points - centre) @ axis + depth
    near = np.sum((scan.points - centre) ** 2, axis=1) < reach**2
    region = near & (above >= LABEL_FRACTION * depth)
    return region, np.where(region[:, None], -above[:, None] * axis, 0.0)


def apply_surface_defects(
    scan: SurfaceScan,
    kinds: tuple[str, ...],
    view: np.ndarray,
    size: float,
    rng: np.random.Generator,
) -> SurfaceScan:
    """``scan`` with the defects ``kinds`` (``bulge``, ``sink``, ``cut``) applied and labelled.

    Raises:
        ValueError: unknown kind.
        RuntimeError: a defect labelled no point in ``MAX_TRIES`` draws.
    """
    points, labels = scan.points.copy(), scan.labels.copy()
    for kind in kinds:
        if kind not in SURFACE_KINDS:
            raise ValueError(f"surface defect must be one of {SURFACE_KINDS}, got {kind!r}")
        current = SurfaceScan(points, scan.normals, labels)
        for _ in range(MAX_TRIES):
            if kind == "cut":
                region, shift = _cut(current, view, rng, size)
            else:
                region, shift = _displace(
                    current, view, rng, size, 1.0 if kind == "bulge" else -1.0
                )
            if region.any():
                break
        else:
            raise RuntimeError(f"surface defect {kind!r} labelled no point in {MAX_TRIES} draws")
        points = points + shift
        labels = labels | region
    return SurfaceScan(points, scan.normals, labels)
