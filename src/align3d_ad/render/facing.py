"""Which side of a scan the views see (issue 17, point 8).

A single-view scan (Eyecandies, MVTec 3D-AD) holds only the surface that faces its camera. Our
renderer looks along ``-z`` after the preset's ``pre_transform`` (see :mod:`.views`), so the views
see that surface only when the scan's own camera looks along about the same direction there. A
reader that knows the camera puts its viewing direction, in the frame of the returned points, in
``sample.meta["view_direction"]`` (Eyecandies: derived from ``pose.txt``); :func:`check_facing`
refuses to render such a sample from the far side. Samples without the key (complete objects,
files without a pose) are not checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import DatasetFormatError
from .views import ViewPreset, get_view_preset

#: Largest angle between a scan's camera direction (after the pre-transform) and the renderer's.
MAX_FACING_ANGLE_DEG = 80.0
#: The renderer's viewing direction in its camera frame (camera on +z, looking towards -z).
RENDER_DIRECTION = np.array([0.0, 0.0, -1.0])


def facing_angle(direction: Sequence[float] | np.ndarray, preset: ViewPreset | str) -> float:
    """Degrees between a scan camera's viewing ``direction`` (cloud frame) and the renderer's."""
    d = np.asarray(direction, dtype=np.float64)
    d = get_view_preset(preset).pre_transform @ (d / np.linalg.norm(d))
    return math.degrees(math.acos(float(np.clip(d @ RENDER_DIRECTION, -1.0, 1.0))))


def format_direction(direction: Sequence[float] | np.ndarray) -> str:
    """``(+0.00, -0.17, -0.98)``."""
    return "(" + ", ".join(f"{v:+.2f}" for v in np.asarray(direction, dtype=np.float64)) + ")"


def check_facing(samples: Sequence, preset: ViewPreset | str) -> None:
    """Raise DatasetFormatError (naming the sample's pose file) when ``preset`` would render a
    sample from the side facing away from its camera (see the module docstring)."""
    preset = get_view_preset(preset)
    for sample in samples:
        meta = getattr(sample, "meta", None) or {}
        direction = meta.get("view_direction")
        if direction is None:
            continue
        angle = facing_angle(direction, preset)
        if angle <= MAX_FACING_ANGLE_DEG:
            continue
        where = (meta.get("paths") or {}).get("pose") or sample.source or sample.sample_id
        raise DatasetFormatError(
            where,
            f"the scan's camera looks along {format_direction(direction)} in the cloud's frame, "
            f"{angle:.0f} degrees from the direction the views {preset.name!r} look along after "
            f"their pre-transform, so they would render the side facing away from the camera; "
            "read Eyecandies with reader option up=auto (data.reader_options / "
            "eval.reader_options), or use views whose pre-transform turns the scan",
        )


__all__ = ["MAX_FACING_ANGLE_DEG", "check_facing", "facing_angle", "format_direction"]
