"""Scored clouds packed for the report's 3D viewer: decimated, quantised, base64-encoded.

A cloud of N points is shown with at most ``cap`` of them (a seeded uniform random subset, the
count stated in the viewer). Coordinates and every score channel are stored as little-endian
uint16 steps of their own range (coordinates: the largest side of the bounding box / 65535, so
the cube keeps its aspect; scores: their finite range / 65535, NaN shown as the minimum); the
ground truth as one uint8 per point. That is 13 bytes a point before base64 (17.3 after), which
``benchmarks/html_report.py`` measured against the cap (benchmarks/README.md).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ShapeError

#: Most points shown per cloud (chosen from the size/open-time figures in benchmarks/README.md).
DISPLAY_CAP = 30_000
#: Quantisation steps of coordinates and scores.
STEPS = 65535


def decimate(num_points: int, cap: int, *, seed: int = 0) -> np.ndarray:
    """Sorted rows of a uniform random subset of ``min(num_points, cap)`` of ``num_points`` rows."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    if num_points <= cap:
        return np.arange(num_points)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_points, size=cap, replace=False))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantise(values: np.ndarray) -> dict[str, Any]:
    """``{"lo", "hi", "data"}``: ``values`` as uint16 steps of their finite range, base64."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    lo = float(values[finite].min()) if finite.any() else 0.0
    hi = float(values[finite].max()) if finite.any() else 0.0
    span = hi - lo
    steps = np.zeros(values.shape) if span <= 0 else (np.where(finite, values, lo) - lo) / span
    q = np.round(np.clip(steps, 0.0, 1.0) * STEPS).astype("<u2")
    return {"lo": lo, "hi": hi, "data": _b64(q)}


def encode_cloud(
    points: np.ndarray,
    channels: Mapping[str, np.ndarray],
    *,
    gt: np.ndarray | None = None,
    cap: int = DISPLAY_CAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Pack a scored cloud for the viewer.

    Args:
        points: (N, 3) coordinates.
        channels: ``{name: (N,) scores}``, e.g. ``fused``, ``aligned``, ``rendering``.
        gt: (N,) bool ground truth, or None.
        cap: Most points kept.
        seed: Seed of the decimation.

    Returns:
        A JSON-able dict: ``total`` (N), ``shown``, ``origin`` (3,), ``scale`` (coordinate step),
        ``xyz`` (base64 uint16, shown x 3 interleaved), ``channels`` ({name: {lo, hi, data}}) and
        ``gt`` (base64 uint8 or None).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ShapeError(f"points must have shape (N, 3), got {points.shape}")
    n = len(points)
    for name, values in channels.items():
        if np.shape(values) != (n,):
            raise ShapeError(f"channel {name!r} must have shape ({n},), got {np.shape(values)}")
    if gt is not None and np.shape(gt) != (n,):
        raise ShapeError(f"gt must have shape ({n},), got {np.shape(gt)}")
    rows = decimate(n, cap, seed=seed)
    shown = points[rows]
    origin = shown.min(axis=0) if len(shown) else np.zeros(3)
    extent = float((shown.max(axis=0) - origin).max()) if len(shown) else 0.0
    scale = extent / STEPS if extent > 0 else 1.0
    xyz = np.round((shown - origin) / scale).astype("<u2")
    return {
        "total": int(n),
        "shown": int(len(rows)),
        "origin": [float(v) for v in origin],
        "scale": scale,
        "xyz": _b64(xyz),
        "channels": {name: _quantise(np.asarray(v)[rows]) for name, v in channels.items()},
        "gt": None if gt is None else _b64(np.asarray(gt, dtype=bool)[rows].astype(np.uint8)),
    }


def decode_cloud(packed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of :func:`encode_cloud` (as the viewer's JavaScript reads it), for tests."""
    n = packed["shown"]
    xyz = np.frombuffer(base64.b64decode(packed["xyz"]), dtype="<u2").reshape(n, 3)
    out = {"points": np.asarray(packed["origin"]) + xyz * packed["scale"]}
    for name, ch in packed["channels"].items():
        q = np.frombuffer(base64.b64decode(ch["data"]), dtype="<u2")
        out[name] = ch["lo"] + q / STEPS * (ch["hi"] - ch["lo"])
    if packed["gt"] is not None:
        out["gt"] = np.frombuffer(base64.b64decode(packed["gt"]), dtype=np.uint8).astype(bool)
    return out
