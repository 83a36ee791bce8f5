"""The synthetic object categories: height fields with procedural colour (metres).

Each category builder draws one object instance (size, details, texture) from a random generator and
returns a :class:`Shape`: a continuous height field ``h(u, v) >= 0`` over the plane the object lies on
(0 off the object) and an albedo function, both in the object's own frame. Sizes follow the real scans:
objects a few cm across and a few mm to 2 cm high (DATASETS.md §1.2, §3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .sdf import (
    plateau,
    rotate,
    sdf_disc,
    sdf_hexagon,
    sdf_round_rect,
    segment_distance,
    smoothstep,
)
from .texture import ValueNoise, mix

HeightFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
AlbedoFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

SCALE_RANGE = (0.9, 1.1)  # random isotropic scale of an instance
MIN_HEIGHT = 1e-4  # m; a cell lower than this is background (the rim of the smooth bevel)
FULL_TURN = 2.0 * np.pi


@dataclass(frozen=True)
class Shape:
    """One object instance in its own frame (metres).

    Attributes:
        category: Synthetic category name.
        height: (u, v) -> height above the supporting plane, >= 0, 0 off the object.
        albedo: (u, v, h) -> colour (..., 3) in [0, 1].
        half_extent: Half sizes of the object's bounding box along u and v.
        max_yaw: Largest rotation about the vertical a pose may apply (radians).
        size: Characteristic size (largest bounding side), sets the defect sizes.
        radius: Radius of the bounding circle about the origin (None: the box's half diagonal).
    """

    category: str
    height: HeightFn
    albedo: AlbedoFn
    half_extent: tuple[float, float]
    max_yaw: float = np.pi
    size: float = 0.05
    radius: float | None = None

    @property
    def bound_radius(self) -> float:
        """Radius of a circle about the origin holding the whole object."""
        return self.radius if self.radius is not None else float(np.hypot(*self.half_extent))


def _scaled(shape: Shape, scale: float) -> Shape:
    """``shape`` scaled uniformly by ``scale`` (lengths and heights)."""
    h0, a0 = shape.height, shape.albedo
    return Shape(
        shape.category,
        lambda u, v: scale * h0(u / scale, v / scale),
        lambda u, v, h: a0(u / scale, v / scale, h / scale),
        (shape.half_extent[0] * scale, shape.half_extent[1] * scale),
        shape.max_yaw,
        shape.size * scale,
        None if shape.radius is None else shape.radius * scale,
    )


def _noise_albedo(base, dark, noise: ValueNoise, amount: float) -> AlbedoFn:
    return lambda u, v, h: mix(base, dark, amount * noise(u, v))


def _cookie(rng: np.random.Generator) -> Shape:
    """A disc 4.3-5.3 cm wide, 6 mm high with a slight dome and 6-10 chocolate chips."""
    radius, chips = 0.024, int(rng.integers(6, 11))
    ang, rad = rng.random(chips) * FULL_TURN, 0.75 * radius * np.sqrt(rng.random(chips))
    centres = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    chip_r, chip_h = rng.uniform(0.002, 0.0035, chips), rng.uniform(0.001, 0.002, chips)
    noise = ValueNoise.draw(rng, frequency=300.0)

    def chip_caps(u, v):
        """Height of the tallest chip at (u, v); only points on the cookie are evaluated."""
        caps = np.zeros(np.shape(u))
        on = u * u + v * v < radius**2
        d2 = (u[on, None] - centres[:, 0]) ** 2 + (v[on, None] - centres[:, 1]) ** 2
        caps[on] = (chip_h * np.sqrt(np.clip(1.0 - d2 / chip_r**2, 0.0, None))).max(axis=-1)
        return caps

    def height(u, v):
        sdf = sdf_disc(u, v, radius)
        base = plateau(sdf, 0.006, 0.003) + 0.0015 * np.clip(1 - (u * u + v * v) / radius**2, 0, 1)
        return base + chip_caps(u, v) * (sdf < -0.001)

    def albedo(u, v, h):
        dough = mix((0.84, 0.64, 0.38), (0.62, 0.40, 0.18), 0.8 * noise(u, v))
        return mix(dough, (0.24, 0.13, 0.07), chip_caps(u, v) > 0)

    return Shape("cookie", height, albedo, (radius, radius), size=2 * radius, radius=radius)


def _bagel(rng: np.random.Generator) -> Shape:
    """A torus (ring 3.8 cm, tube 1.7-2 cm thick), browner on top."""
    ring, tube = 0.019, rng.uniform(0.0085, 0.0100)
    noise = ValueNoise.draw(rng, frequency=250.0)

    def height(u, v):
        d = np.abs(np.hypot(u, v) - ring)
        return 0.85 * np.sqrt(np.clip(tube**2 - d * d, 0.0, None))

    def albedo(u, v, h):
        crust = np.clip(h / (0.85 * tube), 0, 1) ** 2
        return mix(
            mix((0.80, 0.56, 0.28), (0.50, 0.28, 0.10), crust), (0.35, 0.2, 0.08), 0.5 * noise(u, v)
        )

    outer = ring + tube
    return Shape("bagel", height, albedo, (outer, outer), size=2 * outer, radius=outer)


def _dowel(rng: np.random.Generator) -> Shape:
    """A capsule 5.7-6 cm long, 1.3-1.5 cm thick, with wood grain."""
    half, radius = 0.022, rng.uniform(0.0065, 0.0075)
    grain = ValueNoise.draw(rng, frequency=60.0)

    def height(u, v):
        d = segment_distance(u, v, half)
        return np.sqrt(np.clip(radius**2 - d * d, 0.0, None))

    def albedo(u, v, h):
        stripes = 0.5 + 0.5 * np.sin(900.0 * v + 12.0 * grain(u, v))
        return mix((0.84, 0.68, 0.46), (0.62, 0.45, 0.27), 0.7 * stripes)

    return Shape(
        "dowel",
        height,
        albedo,
        (half + radius, radius),
        size=2 * (half + radius),
        radius=half + radius,
    )


def _foam(rng: np.random.Generator) -> Shape:
    """A rounded block about 4 x 3 x 1.4 cm with pores."""
    half_u, half_v = rng.uniform(0.019, 0.022), rng.uniform(0.014, 0.016)
    pores = ValueNoise.draw(rng, frequency=900.0, octaves=2)

    def height(u, v):
        block = plateau(sdf_round_rect(u, v, half_u, half_v, 0.005), 0.014, 0.004)
        return block * (1.0 - 0.03 * pores(u, v))

    albedo = _noise_albedo((0.88, 0.85, 0.64), (0.70, 0.66, 0.45), pores, 0.6)
    return Shape("foam", height, albedo, (half_u, half_v), size=2 * half_u)


def _gland(rng: np.random.Generator) -> Shape:
    """A hexagon nut 1 cm high with a raised collar and a through bore (no points inside)."""
    apothem, bore = 0.016, rng.uniform(0.005, 0.006)
    noise = ValueNoise.draw(rng, frequency=400.0)

    def height(u, v):
        rho = np.hypot(u, v)
        nut = plateau(sdf_hexagon(u, v, apothem), 0.008, 0.0012)
        collar = plateau(np.maximum(rho - 0.011, bore + 0.001 - rho), 0.003, 0.0008)
        return (nut + collar) * smoothstep((rho - bore) / 0.0008)

    albedo = _noise_albedo((0.30, 0.30, 0.33), (0.16, 0.16, 0.18), noise, 0.8)
    outer = apothem / np.cos(np.pi / 6)
    return Shape("gland", height, albedo, (outer, outer), size=2 * outer, radius=outer)


def _rope(rng: np.random.Generator) -> Shape:
    """Three twisted strands along u, 9 cm long (limited yaw: the image is landscape)."""
    half, wobble, strand, pitch = 0.045, 0.0028, 0.0033, rng.uniform(0.020, 0.024)
    phase = rng.random() * FULL_TURN
    fibre = ValueNoise.draw(rng, frequency=500.0)

    def strands(u, v):
        k = np.arange(3) * FULL_TURN / 3
        phi = FULL_TURN * u[..., None] / pitch + phase + k
        centre = strand + wobble + wobble * np.sin(phi)
        lateral = (v[..., None] - wobble * np.cos(phi)) / strand
        return (centre + strand) * np.sqrt(np.clip(1.0 - lateral**2, 0.0, None)), phi

    def height(u, v):
        return strands(u, v)[0].max(axis=-1) * smoothstep((half - np.abs(u)) / 0.004)

    def albedo(u, v, h):
        tops, phi = strands(u, v)
        twist = np.take_along_axis(phi, tops.argmax(axis=-1)[..., None], -1)[..., 0]
        stripes = 0.5 + 0.5 * np.sin(6.0 * twist + 2000.0 * v)
        return mix((0.82, 0.74, 0.55), (0.55, 0.47, 0.32), 0.5 * stripes + 0.3 * fibre(u, v))

    return Shape("rope", height, albedo, (half, 2 * wobble + strand), max_yaw=0.25, size=2 * half)


def _tire(rng: np.random.Generator) -> Shape:
    """A torus with treads on its outer half, black rubber."""
    ring, tube, treads = 0.021, 0.011, int(rng.integers(20, 29))
    noise = ValueNoise.draw(rng, frequency=300.0)

    def height(u, v):
        rho = np.hypot(u, v)
        d = np.abs(rho - ring)
        body = 0.8 * np.sqrt(np.clip(tube**2 - d * d, 0.0, None))
        groove = smoothstep((np.cos(treads * np.arctan2(v, u)) - 0.3) / 0.4)
        return body * (1.0 - 0.25 * groove * smoothstep((rho - ring) / 0.003))

    albedo = _noise_albedo((0.14, 0.14, 0.15), (0.06, 0.06, 0.07), noise, 0.8)
    outer = ring + tube
    return Shape("tire", height, albedo, (outer, outer), size=2 * outer, radius=outer)


def _potato(rng: np.random.Generator) -> Shape:
    """An irregular ellipsoidal blob (random harmonics) with skin noise and dark spots."""
    a, b, top = rng.uniform(0.025, 0.029), rng.uniform(0.017, 0.020), rng.uniform(0.013, 0.017)
    harmonics, phases = rng.uniform(0.0, 0.06, 4), rng.random(4) * FULL_TURN
    skin, spots = ValueNoise.draw(rng, frequency=200.0), ValueNoise.draw(rng, frequency=350.0)

    def height(u, v):
        theta = np.arctan2(v / b, u / a)
        wobble = 1.0 + (harmonics * np.cos(np.arange(2, 6) * theta[..., None] + phases)).sum(-1)
        rho = np.hypot(u / a, v / b) / wobble
        return top * np.sqrt(np.clip(1.0 - rho**2, 0.0, None)) * (1.0 + 0.08 * (skin(u, v) - 0.5))

    def albedo(u, v, h):
        base = mix((0.78, 0.64, 0.40), (0.64, 0.50, 0.28), skin(u, v))
        return mix(base, (0.40, 0.28, 0.16), smoothstep((spots(u, v) - 0.62) / 0.1))

    outer = 1.25 * max(a, b)
    return Shape("potato", height, albedo, (outer, outer), size=2 * a, radius=outer)


def _gear(rng: np.random.Generator) -> Shape:
    """A toothed disc 7 mm thick with a hub and a central hole."""
    radius, teeth, tooth = 0.019, int(rng.integers(14, 21)), rng.uniform(0.0025, 0.0035)
    noise = ValueNoise.draw(rng, frequency=300.0)

    def height(u, v):
        rho = np.hypot(u, v)
        rim = radius + tooth * smoothstep((np.cos(teeth * np.arctan2(v, u)) + 0.2) / 0.6)
        disc = plateau(rho - rim, 0.007, 0.0008)
        hub = plateau(np.maximum(rho - 0.008, 0.0045 - rho), 0.002, 0.0006)
        return (disc + hub) * smoothstep((rho - 0.0035) / 0.0006)

    albedo = _noise_albedo((0.80, 0.66, 0.32), (0.58, 0.45, 0.18), noise, 0.7)
    outer = radius + tooth
    return Shape("gear", height, albedo, (outer, outer), size=2 * outer, radius=outer)


def _plate(rng: np.random.Generator) -> Shape:
    """A rounded plate 5.2 x 3.6 cm, 6 mm thick, with four holes near the corners."""
    half_u, half_v, hole = 0.026, 0.018, rng.uniform(0.0025, 0.0032)
    holes = np.array([[s * 0.018, t * 0.011] for s in (-1, 1) for t in (-1, 1)])
    paint = ValueNoise.draw(rng, frequency=150.0)

    def height(u, v):
        body = plateau(sdf_round_rect(u, v, half_u, half_v, 0.004), 0.006, 0.0015)
        d = np.hypot(u[..., None] - holes[:, 0], v[..., None] - holes[:, 1]).min(axis=-1)
        return body * smoothstep((d - hole) / 0.0006)

    albedo = _noise_albedo((0.26, 0.44, 0.72), (0.16, 0.28, 0.50), paint, 0.6)
    return Shape("plate", height, albedo, (half_u, half_v), size=2 * half_u)


@dataclass(frozen=True)
class CategorySpec:
    """A synthetic category: its builder and its defect classes per format.

    Attributes:
        name: Synthetic category name (MVTec 3D-AD and Real3D-AD folder name).
        build: Draws an unscaled instance from a random generator.
        mvtec_defects: Defect classes of its MVTec-format test split (``combined`` mixes two).
        eyecandies_name: CamelCase folder name in the Eyecandies format.
    """

    name: str
    build: Callable[[np.random.Generator], Shape]
    mvtec_defects: tuple[str, ...]
    eyecandies_name: str


CATEGORIES: dict[str, CategorySpec] = {
    spec.name: spec
    for spec in (
        CategorySpec("cookie", _cookie, ("combined", "contamination", "crack", "hole"), "Cookie"),
        CategorySpec("bagel", _bagel, ("combined", "contamination", "crack", "hole"), "Bagel"),
        CategorySpec("dowel", _dowel, ("combined", "contamination", "cut", "dent"), "Dowel"),
        CategorySpec("foam", _foam, ("bump", "combined", "contamination", "cut"), "Foam"),
        CategorySpec("gland", _gland, ("cut", "dent", "hole"), "Gland"),
        CategorySpec("rope", _rope, ("contamination", "cut", "dent"), "Rope"),
        CategorySpec("tire", _tire, ("combined", "contamination", "cut", "hole"), "Tire"),
        CategorySpec("potato", _potato, ("combined", "contamination", "cut", "hole"), "Potato"),
        CategorySpec("gear", _gear, ("bump", "combined", "crack", "dent"), "Gear"),
        CategorySpec("plate", _plate, ("combined", "contamination", "dent", "hole"), "Plate"),
    )
}


def list_synth_categories() -> list[str]:
    """Names of the synthetic categories, in their fixed order (the order sets the random streams)."""
    return list(CATEGORIES)


def draw_shape(category: str, rng: np.random.Generator) -> Shape:
    """A random instance of ``category``: its builder's draws, then a random scale."""
    shape = CATEGORIES[category].build(rng)
    return _scaled(shape, float(rng.uniform(*SCALE_RANGE)))


def yaw_frame(u: np.ndarray, v: np.ndarray, yaw: float, centre: tuple[float, float]):
    """Object-frame coordinates of plane points (u, v) for an object at ``centre`` turned by ``yaw``."""
    return rotate(u - centre[0], v - centre[1], yaw)


__all__ = ["CATEGORIES", "CategorySpec", "Shape", "draw_shape", "list_synth_categories"]
