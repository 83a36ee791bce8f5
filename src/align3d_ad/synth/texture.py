"""Procedural colour textures and Lambertian shading for the synthetic scans.

Textures are functions of the object's own plane coordinates (metres), so they move with the object;
shading uses normals estimated from the organised xyz grid, like a photo of the real object under the
scanner's light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NOISE_TABLE = 64  # lattice size of the value noise (wraps around)
AMBIENT = 0.35  # ambient share of the shading; keeps every albedo change visible in the 8-bit RGB
DIFFUSE = 0.75  # weight of the directional lights


@dataclass(frozen=True)
class ValueNoise:
    """Fractal value noise in [0, 1] over the plane (bilinear lattice noise, several octaves).

    Attributes:
        table: (O, T, T) random lattice values of the O octaves.
        frequency: Cells per metre of the first octave (each octave doubles it).
        offset: (O, 2) lattice offsets, so octaves do not align.
    """

    table: np.ndarray
    frequency: float
    offset: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, *, frequency: float, octaves: int = 3) -> ValueNoise:
        """A noise of ``octaves`` octaves whose first octave has ``frequency`` cells per metre."""
        table = rng.random((octaves, NOISE_TABLE, NOISE_TABLE))
        return cls(table, float(frequency), rng.random((octaves, 2)) * NOISE_TABLE)

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Noise at (u, v) (any matching shapes), in [0, 1]."""
        total = np.zeros(np.broadcast(u, v).shape)
        weight_sum = 0.0
        for octave, (table, offset) in enumerate(zip(self.table, self.offset)):
            scale = self.frequency * 2.0**octave
            x = np.asarray(u) * scale + offset[0]
            y = np.asarray(v) * scale + offset[1]
            total += 0.5**octave * _lattice(table, x, y)
            weight_sum += 0.5**octave
        return total / weight_sum


def _lattice(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the wrapped lattice ``table`` at lattice coordinates (x, y)."""
    return ndimage.map_coordinates(table, [x, y], order=1, mode="grid-wrap")


def mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend ``a (1 - t) + b t`` of two colours (3,) or (..., 3) by weights t (...)."""
    t = np.asarray(t)[..., None]
    return np.asarray(a) * (1.0 - t) + np.asarray(b) * t


def grid_normals(xyz: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) of an organised grid (H, W, 3), oriented towards the camera (-z).

    Central differences along rows and columns; the cross product of the two tangents.
    """
    du = np.gradient(xyz, axis=1)
    dv = np.gradient(xyz, axis=0)
    normals = np.cross(du, dv)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.where(norm > 0, normals / np.maximum(norm, 1e-30), np.array([0.0, 0.0, -1.0]))
    flip = normals[..., 2:3] > 0
    return np.where(flip, -normals, normals)


def shade(
    albedo: np.ndarray,
    normals: np.ndarray,
    lights: np.ndarray,
    *,
    intensities: np.ndarray | None = None,
    ambient: float = AMBIENT,
) -> np.ndarray:
    """Lambertian image in [0, 1] of ``albedo`` (..., 3) with ``normals`` (..., 3).

    Args:
        albedo: Surface colour in [0, 1].
        normals: Unit normals facing the camera.
        lights: (L, 3) unit directions from the surface towards each light (camera frame).
        intensities: (L,) light strengths (default: all 1/L).
        ambient: Ambient term added to the diffuse sum.
    """
    lights = np.atleast_2d(np.asarray(lights, dtype=np.float64))
    if intensities is None:
        intensities = np.full(len(lights), 1.0 / len(lights))
    diffuse = np.clip(normals @ lights.T, 0.0, None) @ np.asarray(intensities, dtype=np.float64)
    return np.clip(albedo * (ambient + DIFFUSE * diffuse)[..., None], 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def unit(vector: tuple[float, float, float]) -> np.ndarray:
    """``vector`` as a float64 unit vector."""
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)
