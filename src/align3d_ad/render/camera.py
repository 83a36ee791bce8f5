"""Render settings, per-sample normalisation, point spacing, and the camera projection (METHOD.md §2).

Normalisation (once per sample, shared by all its views): centre = midpoint of the bounding box
(keeps the object centred in every view whatever its density), scale = 1 / (largest distance of a
point from that centre), so every view of every sample sees the whole object in the unit sphere.
Fix over the reference, which fitted the camera per view.

Pixel convention: continuous pixel coordinates ``(x, y) = (column, row)``; pixel ``(i, j)`` (row,
column) covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``. This is
``grid_sample(..., align_corners=False)``'s convention: normalised ``g = 2 x / S - 1``.

Projection: orthographic by default, the unit sphere filling ``(1 - margin)`` of the image;
perspective optional, a pin-hole at ``camera_distance`` (in normalised radii) on the +z axis whose
field of view just holds the unit sphere with the same margin. Depth is the distance from the
camera plane along the viewing axis: ``1 - z`` (orthographic, in [0, 2]) or
``camera_distance - z`` (perspective).

Point spacing (drives the splat radius and the depth tolerance): a density measure, the side of the
area each point covers, ``sqrt(pi * median(d_k^2) / k)`` with ``d_k`` the distance to the k-th
nearest neighbour. It equals the grid step of a regular grid to ~10 % and is unbiased for random
(Poisson) sampling, so it also holds on a random subsample of M points after scaling by
``sqrt(M / N)``: an M-point subsample costs milliseconds where a full kNN over 200k points costs
~1 s. The subsample is the M points with the smallest hash of their coordinates, so the estimate
(and hence everything rendered) does not depend on the order of the points. The kNN is cKDTree's on
the CPU and :func:`.knn.knn` on the points' device elsewhere (:func:`.knn.neighbour_backend`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import ConfigError
from .knn import knn, neighbour_backend

#: Allowed projections.
PROJECTIONS = ("orthographic", "perspective")
#: Subsample size of the spacing estimate (accuracy ~ 1/sqrt(M) relative; a few ms on CPU).
SPACING_SAMPLE = 4096
#: Neighbour rank k of the density estimate (k = 8 makes regular grids and random clouds agree).
SPACING_NEIGHBOURS = 8
#: Auto splat radius = SPLAT_SCALE x spacing in pixels (> 1/sqrt(2) closes a regular grid; 1.4 also
#: closes randomly (Poisson) sampled surfaces together with the hole-closing pass).
SPLAT_SCALE = 1.4
#: Cap of the auto splat radius in pixels (very sparse clouds; dilation cost grows as radius^2).
MAX_SPLAT_RADIUS = 16.0
#: Depth tolerance = DEPTH_TOLERANCE_SCALE x (splat radius + 1) pixels, in scene units: the depth
#: change across one splat on a surface slanted up to atan(2) ~ 63 degrees from the image plane.
DEPTH_TOLERANCE_SCALE = 2.0
#: Odd 64-bit multipliers of the order-independent subsample hash (the splitmix64 constants).
_HASH_MULTIPLIERS = (
    0x9E3779B97F4A7C15 - 2**64,
    0xBF58476D1CE4E5B9 - 2**64,
    0x94D049BB133111EB - 2**64,
)


@dataclass(frozen=True)
class RenderSettings:
    """How to render (all lengths in pixels unless stated).

    Attributes:
        image_size: Side S of the square images (the backbone's input size, e.g. 336).
        projection: ``"orthographic"`` or ``"perspective"``.
        splat_radius: Splat radius in pixels (pixel centres within it are covered); None = auto,
            ``SPLAT_SCALE`` x the point spacing in pixels, per sample.
        depth_tolerance: Visibility tolerance in normalised scene units (unit-sphere radii);
            None = auto, scaled to the splat radius (see ``DEPTH_TOLERANCE_SCALE``).
        margin: Fraction of the half-image left free around the unit sphere.
        close_gaps: Close one-pixel gaps between splats (see :func:`.splat.close_gaps`).
        camera_distance: Perspective only: camera distance from the centre, in unit-sphere radii.
        light_direction: Direction towards the light in camera space (x right, y up, z to camera).
        ambient: Ambient fraction of the shading, in [0, 1].
        albedo: Grey level of a fully lit point (METHOD.md: 0.7).
        background: Grey level of empty pixels (1.0 = white).
    """

    image_size: int
    projection: str = "orthographic"
    splat_radius: float | None = None
    depth_tolerance: float | None = None
    margin: float = 0.05
    close_gaps: bool = True
    camera_distance: float = 3.0
    light_direction: tuple[float, float, float] = (0.35, 0.45, 1.0)
    ambient: float = 0.3
    albedo: float = 0.7
    background: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.image_size, int) and self.image_size >= 2, "image_size", "an int >= 2",
             self.image_size),
            (self.projection in PROJECTIONS, "projection", " or ".join(PROJECTIONS), self.projection),
            (self.splat_radius is None or 0 <= self.splat_radius <= 64, "splat_radius",
             "None or in [0, 64] pixels", self.splat_radius),
            (self.depth_tolerance is None or self.depth_tolerance > 0, "depth_tolerance",
             "None or > 0", self.depth_tolerance),
            (0 <= self.margin < 0.5, "margin", "in [0, 0.5)", self.margin),
            (self.camera_distance > 1, "camera_distance", "> 1 (outside the unit sphere)",
             self.camera_distance),
            (0 <= self.ambient <= 1, "ambient", "in [0, 1]", self.ambient),
            (0 <= self.albedo <= 1 and 0 <= self.background <= 1, "albedo/background",
             "in [0, 1]", (self.albedo, self.background)),
            (len(self.light_direction) == 3 and any(self.light_direction), "light_direction",
             "a non-zero 3-vector", self.light_direction),
        ]  # fmt: skip
        for ok, key, expected, got in checks:
            if not ok:
                raise ConfigError(f"render setting {key} must be {expected}, got {got!r}")

    @property
    def focal(self) -> float:
        """Normalised focal factor: image-plane coordinate (in half-images) per scene unit."""
        f = 1.0 - self.margin
        if self.projection == "perspective":
            f *= math.sqrt(self.camera_distance**2 - 1.0)
        return f

    @property
    def pixels_per_unit(self) -> float:
        """Pixels per scene unit at the centre of the unit sphere."""
        scale = self.focal * self.image_size / 2.0
        if self.projection == "perspective":
            scale /= self.camera_distance
        return scale


def normalisation(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (3,) and scale () mapping ``points`` (N, 3) into the unit sphere: ``(p - c) * s``.

    Both are float64, computed in float64 (apply them with :func:`normalise`): in float32 the
    centre of a cloud far from the origin is off by up to half a float32 step (5e-4 at 1e4),
    which shifts the whole rendering, and the radius of coordinates beyond 1e19 overflows.
    """
    p = points.detach().to(torch.float64)
    lo, hi = p.amin(dim=0), p.amax(dim=0)
    centre = (lo + hi) / 2
    radius = (p - centre).norm(dim=1).amax()
    scale = torch.where(radius > 0, 1.0 / radius.clamp_min(torch.finfo(torch.float64).tiny), 1.0)
    return centre, scale


def normalise(points: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(points - centre) * scale`` computed in float64, returned in the dtype of ``points``.

    ``centre`` (3,) or (N, 3) and ``scale`` () or (N, 1) as :func:`normalisation` gives them: the
    cloud is centred and scaled before the cast, so a cloud and the same cloud moved by 1e4 give
    the same normalised points up to float32 rounding (about 1e-7).
    """
    return ((points.to(torch.float64) - centre) * scale).to(points.dtype)


def _order_free_subsample(points: torch.Tensor, m: int) -> torch.Tensor:
    """The ``m`` rows of ``points`` (N, 3) float with the smallest coordinate hash (order-free)."""
    bits = points.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    h = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    for i, mult in enumerate(_HASH_MULTIPLIERS):
        h = (h ^ bits[:, i]) * mult
        h = h ^ (h >> 29)
    idx = torch.topk(h, m, largest=False, sorted=False).indices
    return points[idx]


def point_spacing(points: torch.Tensor) -> float:
    """Side of the area per point of the surface ``points`` (N, 3) samples (0 for < 2 points).

    See the module docstring: ``sqrt(pi * median(d_k^2) / k)`` on an order-free subsample.
    """
    n = int(points.shape[0])
    if n < 2:
        return 0.0
    m = min(n, SPACING_SAMPLE)
    sub = points if m == n else _order_free_subsample(points, m)
    k = min(SPACING_NEIGHBOURS, m - 1)
    if neighbour_backend(points.device) == "torch":  # on the points' device
        sub = sub.detach().to(torch.float64)
        dk2 = knn(sub, sub, k + 1)[0][:, k].square().sort().values
        dk2 = float((dk2[(m - 1) // 2] + dk2[m // 2]) / 2)  # numpy's median
    else:
        sub = sub.detach().to("cpu", torch.float64).numpy()
        dist, _ = cKDTree(sub).query(sub, k=k + 1)
        dk2 = float(np.median(dist[:, k] ** 2))
    return math.sqrt(math.pi * dk2 / k * m / n)


def auto_splat_radius(spacing: float, settings: RenderSettings) -> float:
    """Splat radius in pixels for a normalised point spacing (see ``SPLAT_SCALE``)."""
    if settings.splat_radius is not None:
        return float(settings.splat_radius)
    return min(SPLAT_SCALE * spacing * settings.pixels_per_unit, MAX_SPLAT_RADIUS)


def auto_depth_tolerance(radius: float, settings: RenderSettings) -> float:
    """Visibility depth tolerance in normalised units for a splat radius in pixels."""
    if settings.depth_tolerance is not None:
        return float(settings.depth_tolerance)
    return DEPTH_TOLERANCE_SCALE * (radius + 1.0) / settings.pixels_per_unit


def project(cam: torch.Tensor, settings: RenderSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Project camera-frame points to pixel coordinates and depth.

    Args:
        cam: (..., 3) points in the camera frame (unit sphere, camera on +z looking at -z).
        settings: The render settings.

    Returns:
        ``xy`` (..., 2) continuous pixel coordinates (column, row) and ``depth`` (...,) >= 0.
    """
    half = settings.image_size / 2.0
    if settings.projection == "perspective":
        depth = settings.camera_distance - cam[..., 2]
        factor = settings.focal / depth
    else:
        depth = 1.0 - cam[..., 2]
        factor = settings.focal
    x = (cam[..., 0] * factor + 1.0) * half
    y = (1.0 - cam[..., 1] * factor) * half
    return torch.stack((x, y), dim=-1), depth.clamp_min(0.0) + 0.0


def project_points(
    points: torch.Tensor, rotations: torch.Tensor, settings: RenderSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate normalised points into V cameras and project them, with one matrix product.

    Same result as ``project(einsum("vij,tj->tvi", rotations, points), settings)``, but the
    orthographic scale and offsets are folded into a (3, 3 V) matrix, so no (T, V, 3) camera-frame
    copy is made.

    Args:
        points: (T, 3) points in the unit sphere.
        rotations: (V, 3, 3) camera rotations (normalised frame -> camera frame).
        settings: The render settings.

    Returns:
        ``xy`` (T, V, 2) continuous pixel coordinates and ``depth`` (T, V).
    """
    n_v = rotations.shape[0]
    half = settings.image_size / 2.0
    if settings.projection == "perspective":
        cam = (points @ rotations.reshape(n_v * 3, 3).T).view(-1, n_v, 3)
        depth = settings.camera_distance - cam[..., 2]
        scale = torch.tensor([half, -half], dtype=points.dtype, device=points.device)
        xy = cam[..., :2] * (settings.focal / depth).unsqueeze(-1) * scale + half
    else:
        scale = torch.tensor(
            [settings.focal * half, -settings.focal * half, -1.0],
            dtype=points.dtype,
            device=points.device,
        )
        cam = (points @ (rotations * scale.view(1, 3, 1)).reshape(n_v * 3, 3).T).view(-1, n_v, 3)
        xy = cam[..., :2] + half
        depth = cam[..., 2] + 1.0
    return xy, depth.clamp_min(0.0) + 0.0
