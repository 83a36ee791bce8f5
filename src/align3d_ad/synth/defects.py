"""Defects with exact point-level ground truth on an organised (top-view) scan.

A defect is drawn on the clean scan of an object (its plane coordinates, heights, footprint and
albedo) and returns a :class:`DefectEffect`: the labelled region and what changes there — a height
change (dent, bump, crack, cut, hole rim), missing points (hole core), a new albedo (contamination /
Eyecandies ``colors``) or a rotation of the shading normals (Eyecandies ``normals``). Every effect is
zero outside its region and at least ``LABEL_FRACTION`` of its amplitude inside, so the geometry (or
colour, or normals) changes exactly on the labelled points, and the change survives float32 and
16-bit depth quantisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .sdf import polyline_distance, rotate, segment_distance
from .texture import ValueNoise

LABEL_FRACTION = 0.1  # labelled where the effect is >= 10% of its peak (annotator's edge)
MIN_COLOUR_CHANGE = 0.15  # smallest albedo change (max channel) of a labelled colour-defect pixel
CENTRE_HEIGHT_SHARE = 0.25  # defect centres lie where the object is >= 25% of its peak height
MAX_TRIES = 25  # redraws until a defect covers at least one valid point of the object
CONTAMINANTS = np.array(
    [
        [0.10, 0.08, 0.06],
        [0.85, 0.12, 0.10],
        [0.15, 0.60, 0.20],
        [0.95, 0.95, 0.92],
        [0.10, 0.25, 0.85],
    ]
)  # dirt, red, green, white, blue: the one farthest from the local albedo is used
GEOMETRIC_KINDS = ("bump", "crack", "cut", "dent", "hole")
APPEARANCE_KINDS = ("contamination", "normals")


@dataclass(frozen=True)
class DefectContext:
    """The clean scan a defect is drawn on (all arrays (H, W)).

    Attributes:
        u: Plane coordinate u of each pixel (metres).
        v: Plane coordinate v of each pixel (metres).
        height: Clean height above the plane (metres).
        footprint: Pixels on the object.
        albedo: (H, W, 3) clean colour in [0, 1].
        blocked: Pixels that are missing anyway (sensor dropouts); labels there are not points.
        size: Object size (metres); defect sizes are fractions of it.
        pitch: Pixel pitch on the object (metres); the smallest defect width.
    """

    u: np.ndarray
    v: np.ndarray
    height: np.ndarray
    footprint: np.ndarray
    albedo: np.ndarray
    blocked: np.ndarray
    size: float
    pitch: float


@dataclass(frozen=True)
class DefectEffect:
    """What one defect does to the scan.

    Attributes:
        kind: Defect kind (``"dent"``, ``"hole"``, ``"contamination"``, ...).
        region: (H, W) labelled pixels.
        dh: (H, W) height change (metres), 0 outside ``region``.
        missing: (H, W) pixels whose points are removed (hole cores).
        albedo: (H, W, 3) albedo to use inside ``region``, or None.
        normal_tilt: (H, W) rotation of the shading normals (radians), or None.
        tilt_phase: (H, W) direction of that rotation (radians), or None.
    """

    kind: str
    region: np.ndarray
    dh: np.ndarray
    missing: np.ndarray
    albedo: np.ndarray | None = None
    normal_tilt: np.ndarray | None = None
    tilt_phase: np.ndarray | None = None

    def valid_labelled(self, blocked: np.ndarray) -> int:
        """Labelled pixels that remain points (not missing, not blocked)."""
        return int((self.region & ~self.missing & ~blocked).sum())


def _centre(ctx: DefectContext, rng: np.random.Generator) -> tuple[float, float]:
    """A random pixel position on the body of the object."""
    body = ctx.footprint & (ctx.height >= CENTRE_HEIGHT_SHARE * ctx.height.max())
    index = np.flatnonzero(body)
    pick = index[rng.integers(len(index))]
    return float(ctx.u.flat[pick]), float(ctx.v.flat[pick])


def _effect(kind: str, ctx: DefectContext, weight: np.ndarray, amplitude: float) -> DefectEffect:
    """Height effect ``amplitude * weight`` kept where ``weight >= LABEL_FRACTION`` on the object."""
    region = (weight >= LABEL_FRACTION) & ctx.footprint
    dh = np.where(region, amplitude * weight, 0.0)
    return DefectEffect(kind, region, dh, np.zeros_like(region))


def _ellipse(ctx: DefectContext, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Squared normalised distance (H, W) to a random ellipse of major radius ``radius``."""
    cu, cv = _centre(ctx, rng)
    aspect, angle = rng.uniform(0.6, 1.0), rng.random() * 2 * np.pi
    x, y = rotate(ctx.u - cu, ctx.v - cv, angle)
    return (x / radius) ** 2 + (y / (aspect * radius)) ** 2


def _dent_or_bump(
    kind: str, sign: float, ctx: DefectContext, rng: np.random.Generator
) -> DefectEffect:
    radius = max(ctx.size * rng.uniform(0.07, 0.15), 2.5 * ctx.pitch)
    weight = np.clip(1.0 - _ellipse(ctx, rng, radius), 0.0, None) ** 2
    return _effect(kind, ctx, weight, sign * rng.uniform(0.001, 0.003))


def dent(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A smooth depression 1-3 mm deep, 7-15% of the object wide."""
    return _dent_or_bump("dent", -1.0, ctx, rng)


def bump(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A smooth blob of extra material 1-3 mm high, 7-15% of the object wide."""
    return _dent_or_bump("bump", 1.0, ctx, rng)


def crack(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A jagged groove (random polyline) 1.5-3 mm deep, 30-50% of the object long."""
    steps = int(rng.integers(4, 7))
    length = ctx.size * rng.uniform(0.3, 0.5)
    heading = rng.random() * 2 * np.pi + np.cumsum(rng.uniform(-0.5, 0.5, steps))
    moves = (length / steps) * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    vertices = np.vstack([[0.0, 0.0], np.cumsum(moves, axis=0)]) + _centre(ctx, rng)
    width = max(ctx.size * rng.uniform(0.02, 0.035), ctx.pitch)
    d = polyline_distance(ctx.u, ctx.v, vertices)
    weight = np.clip(1.0 - (d / width) ** 2, 0.0, None)
    return _effect("crack", ctx, weight, -rng.uniform(0.0015, 0.003))


def cut(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A straight V-shaped notch 2-4 mm deep, 25-45% of the object long."""
    cu, cv = _centre(ctx, rng)
    half, angle = ctx.size * rng.uniform(0.125, 0.225), rng.random() * 2 * np.pi
    width = max(ctx.size * rng.uniform(0.035, 0.06), 1.5 * ctx.pitch)
    x, y = rotate(ctx.u - cu, ctx.v - cv, angle)
    weight = np.clip(1.0 - segment_distance(x, y, half) / width, 0.0, None)
    return _effect("cut", ctx, weight, -rng.uniform(0.002, 0.004))


def hole(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A hole: no points in its core (half its radius), a rim sloping down into it.

    The labelled region covers the core too, so part of the ground truth lies on missing points
    (as in the real MVTec 3D-AD scans).
    """
    radius = max(ctx.size * rng.uniform(0.07, 0.12), 3.0 * ctx.pitch)
    d = np.sqrt(_ellipse(ctx, rng, radius)) * radius
    core = 0.5 * radius
    weight = np.clip(1.0 - (d - core) / (radius - core), 0.0, 1.0)
    effect = _effect("hole", ctx, weight, -rng.uniform(0.001, 0.002))
    missing = (d < core) & ctx.footprint
    return DefectEffect("hole", effect.region, np.where(missing, 0.0, effect.dh), missing)


def _blob(ctx: DefectContext, rng: np.random.Generator) -> np.ndarray:
    """Union of 2-4 random ellipses around a centre on the object (H, W) bool."""
    radius = max(ctx.size * rng.uniform(0.04, 0.08), 2.0 * ctx.pitch)
    blob = _ellipse(ctx, rng, radius) < 1.0
    cu, cv = _centre(ctx, rng)
    for _ in range(int(rng.integers(1, 4))):
        off = rng.normal(0.0, 0.7 * radius, 2)
        r = radius * rng.uniform(0.5, 1.0)
        blob |= (ctx.u - cu - off[0]) ** 2 + (ctx.v - cv - off[1]) ** 2 < r * r
    return blob & ctx.footprint


def contamination(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """A patch of foreign colour (colour only: the geometry is unchanged)."""
    blob = _blob(ctx, rng)
    local = ctx.albedo[blob].mean(axis=0) if blob.any() else ctx.albedo.mean(axis=(0, 1))
    colour = CONTAMINANTS[np.argmax(np.abs(CONTAMINANTS - local).max(axis=1))]
    grain = ValueNoise.draw(rng, frequency=800.0, octaves=2)(ctx.u, ctx.v)
    albedo = np.clip(colour * (0.85 + 0.3 * grain)[..., None], 0.0, 1.0)
    region = blob & (np.abs(albedo - ctx.albedo).max(axis=-1) >= MIN_COLOUR_CHANGE)
    zero = np.zeros(region.shape)
    return DefectEffect("contamination", region, zero, np.zeros_like(region), albedo=albedo)


def normals(ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """Eyecandies ``normals`` anomaly: shading normals turned by 15-25 deg, geometry unchanged."""
    region = _blob(ctx, rng)
    period, angle = ctx.size * rng.uniform(0.05, 0.1), rng.random() * 2 * np.pi
    phase = 2 * np.pi * (ctx.u * np.cos(angle) + ctx.v * np.sin(angle)) / period
    tilt = np.where(region, np.deg2rad(rng.uniform(15.0, 25.0)), 0.0)
    zero = np.zeros(region.shape)
    return DefectEffect(
        "normals", region, zero, np.zeros_like(region), normal_tilt=tilt, tilt_phase=phase
    )


DEFECTS: dict[str, Callable[[DefectContext, np.random.Generator], DefectEffect]] = {
    "bump": bump,
    "contamination": contamination,
    "crack": crack,
    "cut": cut,
    "dent": dent,
    "hole": hole,
    "normals": normals,
}


def draw_defect(kind: str, ctx: DefectContext, rng: np.random.Generator) -> DefectEffect:
    """Draw a defect of ``kind`` that labels at least one valid point of the object.

    Raises:
        KeyError: unknown ``kind``.
        RuntimeError: no placement labelled a valid point in ``MAX_TRIES`` draws.
    """
    make = DEFECTS[kind]
    for _ in range(MAX_TRIES):
        effect = make(ctx, rng)
        if effect.valid_labelled(ctx.blocked) > 0:
            return effect
    raise RuntimeError(f"defect {kind!r} found no valid object point in {MAX_TRIES} draws")
