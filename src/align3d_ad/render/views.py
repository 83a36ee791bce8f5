"""View presets: which rotations of the centred cloud the fixed camera sees (METHOD.md §2).

Camera convention (used by the whole ``render`` package): after per-sample normalisation the cloud
lies in the unit sphere; the view rotation ``R_v`` is applied after the preset's ``pre_transform``
``T``, ``p_cam = R_v @ T @ p``. The camera sits on the ``+z`` axis and looks towards ``-z``; image
columns grow with ``+x`` and image rows grow with ``-y`` (``+y`` is up), so depth grows with
``-z``. This is the OpenGL / Open3D convention the reference view angles were chosen in.

Why a pre-transform: MVTec 3D-AD and Eyecandies (camera-frame clouds, DATASETS.md §1.2 and §2.4)
store points in the *sensor* frame, where the sensor looks along ``+z`` with ``+y`` pointing down
the image. Seen from our camera unchanged, such a scan would show its underside (the side facing
away from the sensor). The 180-degree rotation about ``x``, ``diag(1, -1, -1)``, turns the sensor
frame into the camera frame: the scanned top faces the camera and the identity view reproduces the
sensor's own image layout (not mirrored). Real3D-AD objects are full 360-degree scans and need none.

Presets are data (STYLE.md (c) 7): :func:`list_view_presets`, :func:`get_view_preset`,
:func:`register_view_preset`, and :func:`view_preset_from_spec` for lists from a config file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

#: Rotation by 180 degrees about x: sensor frame (looks along +z, y down) -> camera frame.
SENSOR_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
#: Reference view angles in degrees (METHOD.md §2, PointAD / Align3D-AD render scripts).
MVTEC3D_VIEWS: tuple[tuple[str, float], ...] = (
    ("x", -45.0), ("x", -15.0), ("x", 0.0), ("x", 15.0), ("x", 45.0),
    ("y", -30.0), ("y", -15.0), ("y", 15.0), ("y", 30.0),
)  # fmt: skip
EYECANDIES_VIEWS: tuple[tuple[str, float], ...] = (
    ("x", -30.0), ("x", -15.0), ("x", 0.0), ("x", 10.0), ("x", 20.0),
    ("y", -30.0), ("y", -15.0), ("y", 15.0), ("y", 30.0),
)  # fmt: skip
REAL3D_VIEWS: tuple[tuple[str, float], ...] = tuple(("x", float(a)) for a in range(-144, 145, 36))
#: Orthonormality tolerance for user-supplied rotation matrices.
ROTATION_ATOL = 1e-5


@dataclass(frozen=True)
class ViewPreset:
    """A named set of V views.

    Attributes:
        name: Registry name.
        rotations: float64 (V, 3, 3) proper rotations, applied after ``pre_transform``.
        pre_transform: float64 (3, 3) rotation applied to the normalised cloud before every view.
        labels: One short label per view (e.g. ``"x-45"``), for titles in view grids.
    """

    name: str
    rotations: np.ndarray
    pre_transform: np.ndarray = field(default_factory=lambda: np.eye(3))
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rotations = _check_rotations(np.asarray(self.rotations, dtype=np.float64), "rotations")
        pre = _check_rotations(
            np.asarray(self.pre_transform, dtype=np.float64)[None], "pre_transform"
        )
        labels = tuple(self.labels) or tuple(f"view{i}" for i in range(len(rotations)))
        if len(labels) != len(rotations):
            raise ConfigError(
                f"labels must have one entry per view ({len(rotations)}), got {len(labels)}"
            )
        rotations.setflags(write=False)
        pre = pre[0]
        pre.setflags(write=False)
        object.__setattr__(self, "rotations", rotations)
        object.__setattr__(self, "pre_transform", pre)
        object.__setattr__(self, "labels", labels)

    @property
    def num_views(self) -> int:
        return int(self.rotations.shape[0])

    def camera_rotations(self) -> np.ndarray:
        """(V, 3, 3) full rotations ``R_v @ T`` from normalised cloud to camera frame."""
        return self.rotations @ self.pre_transform


def _check_rotations(r: np.ndarray, name: str) -> np.ndarray:
    """Raise ConfigError unless ``r`` is (V, 3, 3) proper rotations (V >= 1); return a copy."""
    if r.ndim != 3 or r.shape[1:] != (3, 3) or r.shape[0] < 1:
        raise ConfigError(f"{name} must have shape (V, 3, 3) with V >= 1, got {r.shape}")
    if not np.isfinite(r).all():
        raise ConfigError(f"{name} must be finite, got NaN or inf")
    gram = r @ np.swapaxes(r, 1, 2)
    if not np.allclose(gram, np.eye(3), atol=ROTATION_ATOL) or not np.allclose(
        np.linalg.det(r), 1.0, atol=ROTATION_ATOL
    ):
        raise ConfigError(
            f"{name} must be proper rotations (R R^T = I, det R = 1), got other matrices"
        )
    return np.array(r, dtype=np.float64)


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    """Right-handed rotation matrix (3, 3) by ``degrees`` about ``axis`` (``"x"``, ``"y"``, ``"z"``).

    Examples:
        >>> np.round(axis_rotation("z", 90) @ np.array([1.0, 0.0, 0.0]), 6).tolist()
        [0.0, 1.0, 0.0]
    """
    axis = str(axis).lower()
    if axis not in ("x", "y", "z"):
        raise ConfigError(f"view axis must be one of x, y, z, got {axis!r}")
    a = math.radians(float(degrees))
    c, s = math.cos(a), math.sin(a)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def view_preset_from_spec(
    spec: Sequence[Sequence] | np.ndarray,
    name: str = "custom",
    *,
    pre_transform: np.ndarray | str | None = None,
) -> ViewPreset:
    """Build a preset from ``[(axis, degrees), ...]`` (as in a config file) or a (V, 3, 3) array.

    Args:
        spec: One ``(axis, degrees)`` pair per view, or the rotation matrices themselves.
        name: Name of the preset.
        pre_transform: (3, 3) rotation, or the name of a registered preset whose pre-transform to
            reuse (e.g. ``"mvtec3d"`` for sensor-frame scans); None = identity.
    """
    if isinstance(pre_transform, str):
        pre = get_view_preset(pre_transform).pre_transform
    else:
        pre = np.eye(3) if pre_transform is None else np.asarray(pre_transform, dtype=np.float64)
    if isinstance(spec, np.ndarray) and spec.dtype.kind == "f":
        return ViewPreset(name, spec, pre)
    pairs = list(spec)
    if not pairs:
        raise ConfigError(
            f"view list {name!r} must hold at least one [axis, degrees] pair, got none"
        )
    rotations, labels = [], []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise ConfigError(
                f"each view of {name!r} must be an [axis, degrees] pair, got {pair!r}"
            )
        axis, degrees = pair
        try:
            degrees = float(degrees)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"view angle must be a number of degrees, got {degrees!r}") from err
        rotations.append(axis_rotation(axis, degrees))
        labels.append(f"{str(axis).lower()}{degrees:g}")
    return ViewPreset(name, np.stack(rotations), pre, tuple(labels))


_REGISTRY: dict[str, ViewPreset] = {}


def register_view_preset(preset: ViewPreset, *, overwrite: bool = False) -> None:
    """Add ``preset`` to the registry under ``preset.name``."""
    if preset.name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"view preset {preset.name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[preset.name] = preset


def get_view_preset(name: str | ViewPreset) -> ViewPreset:
    """Return the registered preset ``name`` (a :class:`ViewPreset` passes through)."""
    if isinstance(name, ViewPreset):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"view preset must be one of {valid}, got {name!r}") from None


def resolve_view_preset(
    views: str | ViewPreset | Sequence[Sequence] | np.ndarray,
    *,
    pre_transform: np.ndarray | str | None = None,
) -> ViewPreset:
    """The preset a config's ``render.views`` names: a registered name, or a list of
    ``[axis, degrees]`` pairs / (V, 3, 3) rotations (see :func:`view_preset_from_spec`)."""
    if isinstance(views, str | ViewPreset):
        return get_view_preset(views)
    return view_preset_from_spec(views, pre_transform=pre_transform)


def list_view_presets() -> list[str]:
    """Names of all registered presets, sorted."""
    return sorted(_REGISTRY)


register_view_preset(
    view_preset_from_spec(MVTEC3D_VIEWS, "mvtec3d", pre_transform=SENSOR_TO_CAMERA)
)
register_view_preset(
    view_preset_from_spec(EYECANDIES_VIEWS, "eyecandies"),  # world frame (pose.txt applied): z up
)
register_view_preset(view_preset_from_spec(REAL3D_VIEWS, "real3d"))
