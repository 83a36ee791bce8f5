"""Top-view organised scans: an object lying on a slightly tilted plane, seen by a pinhole camera.

The camera sits at the origin looking along +z (the sensor frame of MVTec 3D-AD and the camera frame
of Eyecandies). Each pixel's ray meets the supporting plane at plane coordinates (u, v); the object's
height field at (u, v) lifts the point along the plane normal, and the point is placed on the pixel's
ray at exactly that height, so ``xyz = depth * ((c - cx) / f, (r - cy) / f, 1)`` holds for every pixel
(Eyecandies back-projection, DATASETS.md §2.4). Units are metres.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .defects import DefectContext, DefectEffect
from .shapes import CATEGORIES, MIN_HEIGHT, SCALE_RANGE, Shape, draw_shape, yaw_frame
from .texture import ValueNoise, grid_normals, mix

FRAME_MARGIN = 1.3  # field of view / object bounding box (room for offsets, tilt, scale)
TILT_DEG = (1.0, 4.0)  # tilt of the supporting plane against the image plane
DISTANCE_JITTER = 0.02  # relative jitter of the camera distance between scans
STEEP_SLOPE = 1.5  # |grad h| above which the structured-light sensor may lose the point
STEEP_DROPOUT = 0.3  # chance to lose a point on a steep slope
RANDOM_DROPOUT = 0.002  # chance to lose any point
BACKGROUND = ((0.20, 0.20, 0.22), (0.08, 0.08, 0.09))  # light and dark background colours


@dataclass(frozen=True)
class Camera:
    """Pinhole camera without distortion; pixel (r, c) looks along ((c - cx)/f, (r - cy)/f, 1)."""

    focal: float
    cx: float
    cy: float
    height: int
    width: int

    def rays(self) -> np.ndarray:
        """(H, W, 3) ray directions with z = 1 (so a point is ``depth * ray``)."""
        rows, cols = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        return np.stack(
            [(cols - self.cx) / self.focal, (rows - self.cy) / self.focal, np.ones_like(rows)], -1
        )


@dataclass(frozen=True)
class CleanScan:
    """An object instance posed in front of a camera, before defects (arrays (H, W)).

    Attributes:
        camera: The camera.
        shape: The object instance.
        origin: (3,) the object's centre on the plane, camera frame.
        axes: (3, 3) rows e1, e2, n: plane axes and the plane normal (towards the camera).
        yaw: Rotation of the object about the plane normal (radians).
        rays: (H, W, 3) pixel rays.
        u: Plane coordinate u of each pixel.
        v: Plane coordinate v of each pixel.
        height: Height of the object above the plane.
        footprint: Pixels on the object (height > MIN_HEIGHT).
        albedo: (H, W, 3) colour of object and background.
        blocked: Points lost by the sensor (dropouts).
        pitch: Pixel pitch on the plane (metres).
    """

    camera: Camera
    shape: Shape
    origin: np.ndarray
    axes: np.ndarray
    yaw: float
    rays: np.ndarray
    u: np.ndarray
    v: np.ndarray
    height: np.ndarray
    footprint: np.ndarray
    albedo: np.ndarray
    blocked: np.ndarray
    pitch: float

    def context(self) -> DefectContext:
        """What a defect needs to be drawn on this scan."""
        return DefectContext(
            self.u,
            self.v,
            self.height,
            self.footprint,
            self.albedo,
            self.blocked,
            self.shape.size,
            self.pitch,
        )

    def camera_to_world(self) -> np.ndarray:
        """(4, 4) pose mapping camera coordinates to the plane frame (x, y on the plane, z up)."""
        pose = np.eye(4)
        pose[:3, :3] = self.axes
        pose[:3, 3] = -self.axes @ self.origin
        return pose


@dataclass(frozen=True)
class OrganisedScan:
    """A finished top-view scan.

    Attributes:
        xyz: (H, W, 3) float32 points, exact zeros where missing.
        valid: (H, W) pixels holding a point.
        depth: (H, W) float64 depth (z) of every pixel, missing ones included.
        albedo: (H, W, 3) colour in [0, 1].
        normals: (H, W, 3) unit shading normals (camera frame, facing the camera).
        labels: (H, W) uint8; 0 normal, ``i + 1`` for pixels of defect ``kinds[i]``.
        kinds: Defect kind of each applied effect, in order (later effects win overlaps).
        regions: (H, W) labelled pixels of each effect (overlaps kept).
        camera_to_world: (4, 4) pose, camera frame -> plane frame.
    """

    xyz: np.ndarray
    valid: np.ndarray
    depth: np.ndarray
    albedo: np.ndarray
    normals: np.ndarray
    labels: np.ndarray
    kinds: tuple[str, ...]
    regions: tuple[np.ndarray, ...]
    camera_to_world: np.ndarray


@functools.cache
def _frame_half_extent(category: str) -> tuple[float, float]:
    """Half extents (u, v) a camera must see: the largest instance at any allowed yaw."""
    shape = CATEGORIES[category].build(np.random.default_rng(0))
    if shape.max_yaw >= np.pi / 2:
        radius = SCALE_RANGE[1] * shape.bound_radius
        return radius, radius
    hu, hv = (SCALE_RANGE[1] * e for e in shape.half_extent)
    yaw = shape.max_yaw
    return hu * np.cos(yaw) + hv * np.sin(yaw), hu * np.sin(yaw) + hv * np.cos(yaw)


def frame_pitch(category: str, grid_shape: tuple[int, int]) -> float:
    """Pixel pitch (metres at the plane) that fits every instance of ``category`` in the grid."""
    hu, hv = _frame_half_extent(category)
    height, width = grid_shape
    return FRAME_MARGIN * max(2 * hu / width, 2 * hv / height)


def _plane_axes(rng: np.random.Generator) -> np.ndarray:
    """Rows e1, e2, n of a plane tilted by TILT_DEG about a random horizontal axis, n towards -z."""
    tilt = np.deg2rad(rng.uniform(*TILT_DEG))
    psi = rng.random() * 2 * np.pi
    n = np.array([-np.sin(tilt) * np.sin(psi), np.sin(tilt) * np.cos(psi), -np.cos(tilt)])
    e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1), n])


def draw_clean_scan(
    category: str,
    camera: Camera,
    rng: np.random.Generator,
    *,
    distance: float,
    pitch: float,
    dropouts: bool,
) -> CleanScan:
    """Pose a random instance of ``category`` at about ``distance`` in front of ``camera``.

    Args:
        category: Synthetic category name.
        camera: The camera (its focal length matches ``distance / pitch``).
        rng: Object stream: instance, pose, background and dropouts come from it, in that order.
        distance: Nominal camera-to-plane distance (metres).
        pitch: Pixel pitch at that distance (metres), used for offsets and slopes.
        dropouts: Lose points on steep slopes and at random, like a structured-light sensor.
    """
    shape = draw_shape(category, rng)
    yaw = float(rng.uniform(-shape.max_yaw, shape.max_yaw))
    axes = _plane_axes(rng)
    hu, hv = _frame_half_extent(category)
    room = np.array([camera.width * pitch / 2 - hu, camera.height * pitch / 2 - hv])
    offset = rng.uniform(-0.5, 0.5, 2) * np.maximum(room, 0.0)
    z0 = distance * (1.0 + rng.uniform(-DISTANCE_JITTER, DISTANCE_JITTER))
    origin = np.array([offset[0], offset[1], z0])
    rays = camera.rays()
    t0 = (axes[2] @ origin) / (rays @ axes[2])
    rel = t0[..., None] * rays - origin
    u, v = rel @ axes[0], rel @ axes[1]
    ou, ov = yaw_frame(u, v, yaw, (0.0, 0.0))
    height = shape.height(ou, ov)
    footprint = height > MIN_HEIGHT
    back = ValueNoise.draw(rng, frequency=120.0, octaves=2)(u, v)
    albedo = mix(*BACKGROUND, back)
    albedo[footprint] = shape.albedo(ou[footprint], ov[footprint], height[footprint])
    lost = rng.random(height.shape)
    blocked = np.zeros_like(footprint)
    if dropouts:
        slope = np.hypot(*np.gradient(height)) / pitch
        blocked = ((slope > STEEP_SLOPE) & (lost < STEEP_DROPOUT)) | (lost > 1.0 - RANDOM_DROPOUT)
    return CleanScan(
        camera, shape, origin, axes, yaw, rays, u, v, height, footprint, albedo, blocked, pitch
    )


def _tilt_normals(normals: np.ndarray, tilt: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Rotate each normal by ``tilt`` about the axis n x (cos phase, sin phase, 0)."""
    direction = np.stack([np.cos(phase), np.sin(phase), np.zeros_like(phase)], axis=-1)
    axis = np.cross(normals, direction)
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    turned = normals * np.cos(tilt)[..., None] + np.cross(axis, normals) * np.sin(tilt)[..., None]
    return turned / np.linalg.norm(turned, axis=-1, keepdims=True)


def compose(clean: CleanScan, effects: Sequence[DefectEffect] = ()) -> OrganisedScan:
    """Apply ``effects`` to ``clean`` and build the finished scan (points, colours, labels)."""
    height = clean.height.copy()
    missing = clean.blocked.copy()
    albedo = clean.albedo.copy()
    labels = np.zeros(height.shape, dtype=np.uint8)
    for index, effect in enumerate(effects):
        height += effect.dh
        missing |= effect.missing
        if effect.albedo is not None:
            albedo[effect.region] = effect.albedo[effect.region]
        labels[effect.region] = index + 1
    height = np.maximum(height, 0.0)
    normal = clean.axes[2]
    depth = (height + normal @ clean.origin) / (clean.rays @ normal)
    xyz = depth[..., None] * clean.rays
    normals = grid_normals(xyz)
    for effect in effects:
        if effect.normal_tilt is not None:
            turned = _tilt_normals(normals, effect.normal_tilt, effect.tilt_phase)
            normals = np.where(effect.region[..., None], turned, normals)
    points = np.where(missing[..., None], 0.0, xyz).astype(np.float32)
    kinds = tuple(effect.kind for effect in effects)
    regions = tuple(effect.region for effect in effects)
    return OrganisedScan(
        points, ~missing, depth, albedo, normals, labels, kinds, regions, clean.camera_to_world()
    )
