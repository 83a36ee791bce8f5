"""The central data type: one point cloud with its labels (DESIGN.md, "The central types")."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import check_shape
from ..errors import ShapeError


def valid_point_mask(xyz: np.ndarray, *, zero_is_missing: bool = True) -> np.ndarray:
    """Rows of ``xyz`` (..., 3) that are real points: finite and, in grids, not all zero.

    Args:
        xyz: (..., 3) coordinates.
        zero_is_missing: True for organised grids, where an all-zero cell marks a missing point
            (MVTec 3D-AD); False for unorganised clouds, where (0, 0, 0) is a real point.
    """
    finite = np.isfinite(xyz).all(axis=-1)
    if not zero_is_missing:
        return finite
    return finite & (xyz != 0).any(axis=-1)


#: Float64 coordinates are shifted by an origin (see :class:`PointCloudSample`) when float32
#: would keep fewer steps than this across the cloud (a centred cloud keeps about 2**24; a 20 cm
#: part 2 m from the camera 2**19, kept as it is).
FLOAT32_SHIFT_STEPS = 2**16


def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (3,) minimum and maximum of (N >= 1, 3) finite points, exact in their own dtype.

    One torch pass: about 10x numpy's strided axis-0 reductions on big clouds.
    """
    with warnings.catch_warnings():  # a read-only array is fine: aminmax only reads it
        warnings.simplefilter("ignore", UserWarning)
        lo, hi = torch.aminmax(torch.from_numpy(np.asarray(points)), dim=0)
    return lo.numpy().astype(np.float64), hi.numpy().astype(np.float64)


def float32_steps(lo: np.ndarray, hi: np.ndarray) -> float:
    """How many float32 steps (at the box's largest coordinate) span the box ``lo``..``hi``."""
    reach = float(np.maximum(np.abs(lo), np.abs(hi)).max())
    return float((hi - lo).max()) / float(np.spacing(np.float32(reach)))


def float32_origin(points: np.ndarray) -> np.ndarray | None:
    """The float64 (3,) origin that keeps float64 ``points``' detail in float32, or None.

    None for other dtypes and for clouds float32 resolves to :data:`FLOAT32_SHIFT_STEPS` steps
    or more; else the centre of their bounding box.
    """
    points = np.asarray(points)
    if points.dtype != np.float64 or points.ndim != 2 or points.shape[-1] != 3:
        return None
    finite = points if np.isfinite(points).all() else points[np.isfinite(points).all(axis=1)]
    if not len(finite):
        return None
    lo, hi = bounds(finite)
    if (hi == lo).all() or float32_steps(lo, hi) >= FLOAT32_SHIFT_STEPS:
        return None
    return (lo + hi) / 2


@dataclass
class PointCloudSample:
    """One point cloud, optionally with colours, labels and its organised grid.

    Attributes:
        points: float32 (N, 3) coordinates, relative to ``origin`` when it is set; never
            contains NaN or inf when built with :meth:`from_grid` or :meth:`from_points` (nor,
            from a grid, the all-zero missing marker).
        colors: float32 (N, 3) in [0, 1], or None.
        point_labels: bool (N,), True for anomalous points, or None when unknown.
        label: 1 anomalous, 0 normal, None unknown.
        category: Object category (e.g. ``"bagel"``).
        sample_id: Identifier unique within its dataset (e.g. ``"test/crack/000"``).
        defect_type: Defect folder or kind (``"good"`` for normal samples), or None.
        grid_shape: (H, W) of the organised grid the points came from, or None.
        grid_index: int64 (N,) flat index ``row * W + col`` of every point in that grid, or None.
        source: The file the sample was read from, or None.
        source_rows: How many points (rows, or grid cells) the source held, invalid ones
            included, or None when unknown.
        source_index: int64 (N,) the source row of every point (for grids: ``grid_index``), or
            None; with ``source_rows``, :meth:`to_rows` maps values back to the source.
        origin: float64 (3,) offset of ``points``, or None (``points`` are the coordinates).
            Set when float64 coordinates are given that float32 would round coarsely (far from
            0 for the cloud's size, e.g. a scan in a plant's or a map's frame): ``points`` then
            hold ``coordinates - origin`` in float32, with the detail kept, and
            :meth:`coordinates` gives the float64 coordinates back. Scores do not depend on it.
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    label: int | None = None
    category: str = ""
    sample_id: str = ""
    defect_type: str | None = None
    grid_shape: tuple[int, int] | None = None
    grid_index: np.ndarray | None = None
    source: Path | None = None
    meta: dict = field(default_factory=dict)
    source_rows: int | None = None
    source_index: np.ndarray | None = None
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = float32_origin(self.points)
            if self.origin is not None:
                self.points = np.asarray(self.points, dtype=np.float64) - self.origin
        else:
            self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        n = check_shape(self.points, "N 3", name="points")["N"]
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32)
            check_shape(self.colors, f"{n} 3", name="colors")
        if self.point_labels is not None:
            self.point_labels = np.ascontiguousarray(self.point_labels).astype(bool, copy=False)
            check_shape(self.point_labels, f"{n}", name="point_labels")
        if self.label is not None:
            self.label = int(self.label)
            if self.label not in (0, 1):
                raise ValueError(f"label must be 0, 1 or None, got {self.label}")
        if (self.grid_shape is None) != (self.grid_index is None):
            raise ShapeError("grid_shape and grid_index must be given together")
        if self.grid_index is not None:
            self.grid_shape = (int(self.grid_shape[0]), int(self.grid_shape[1]))
            self.grid_index = np.ascontiguousarray(self.grid_index, dtype=np.int64)
            check_shape(self.grid_index, f"{n}", name="grid_index")
            cells = self.grid_shape[0] * self.grid_shape[1]
            if n and (self.grid_index.min() < 0 or self.grid_index.max() >= cells):
                raise ShapeError(f"grid_index must lie in [0, {cells}), got values outside")
        if self.source is not None:
            self.source = Path(self.source)
        if (self.source_rows is None) != (self.source_index is None):
            raise ShapeError("source_rows and source_index must be given together")
        if self.source_index is not None:
            self.source_rows = int(self.source_rows)
            self.source_index = np.ascontiguousarray(self.source_index, dtype=np.int64)
            check_shape(self.source_index, f"{n}", name="source_index")
            rows = self.source_rows
            if n and (self.source_index.min() < 0 or self.source_index.max() >= rows):
                raise ShapeError(f"source_index must lie in [0, {rows}), got values outside")

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def is_organised(self) -> bool:
        return self.grid_shape is not None

    @classmethod
    def from_grid(
        cls,
        xyz: np.ndarray,
        *,
        colors: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        **fields,
    ) -> PointCloudSample:
        """Build a sample from an organised grid, dropping invalid cells.

        Args:
            xyz: (H, W, 3) coordinates; cells that are all zero or not finite are missing.
            colors: (H, W, 3) colours, uint8 (0..255) or float in [0, 1], pixel-aligned with ``xyz``.
            mask: (H, W) ground truth; any value > 0 is anomalous.
            **fields: Other :class:`PointCloudSample` fields (``label``, ``category``, ...).
        """
        h, w = check_shape(xyz, "H W 3", name="xyz").values()
        valid = valid_point_mask(xyz).reshape(-1)
        index = np.flatnonzero(valid)
        pts = xyz.reshape(-1, 3)[index]
        cols = None
        if colors is not None:
            check_shape(colors, f"{h} {w} 3", name="colors")
            cols = colors.reshape(-1, 3)[index]
            cols = cols.astype(np.float32) / 255.0 if cols.dtype == np.uint8 else cols
        labels = None
        if mask is not None:
            check_shape(mask, f"{h} {w}", name="mask")
            labels = mask.reshape(-1)[index] > 0
        fields.setdefault("source_rows", h * w)
        fields.setdefault("source_index", index)
        return cls(
            pts, colors=cols, point_labels=labels, grid_shape=(h, w), grid_index=index, **fields
        )

    @classmethod
    def from_points(cls, points: np.ndarray, **fields) -> PointCloudSample:
        """Build a sample from an unorganised (N, 3) array, dropping NaN/inf rows.

        (0, 0, 0) is a real point here; ``source_index`` records the row of every kept point.
        """
        points = np.asarray(points)
        m = check_shape(points, "N 3", name="points")["N"]
        keep = valid_point_mask(points, zero_is_missing=False)
        fields.setdefault("source_rows", m)
        fields.setdefault("source_index", np.flatnonzero(keep))
        if keep.all():
            return cls(points, **fields)
        for key in ("colors", "point_labels"):
            if fields.get(key) is not None:
                fields[key] = np.asarray(fields[key])[keep]
        return cls(points[keep], **fields)

    def to_grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter per-point ``values`` (N, ...) back onto the (H, W, ...) organised grid."""
        if self.grid_shape is None or self.grid_index is None:
            raise ValueError(f"sample {self.sample_id!r} has no organised grid")
        values = np.asarray(values)
        if values.shape[0] != self.num_points:
            raise ShapeError(f"values must have {self.num_points} rows, got {values.shape[0]}")
        h, w = self.grid_shape
        out = np.full((h * w, *values.shape[1:]), fill, dtype=values.dtype)
        out[self.grid_index] = values
        return out.reshape(h, w, *values.shape[1:])

    def to_rows(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Scatter per-point ``values`` (N, ...) back onto the source's rows (source_rows, ...).

        Rows the sample dropped (NaN/inf, missing grid cells) get ``fill``; for organised sources
        the rows are the grid cells in row-major order (``.reshape(*grid_shape)`` gives the grid).
        """
        if self.source_rows is None or self.source_index is None:
            raise ValueError(f"sample {self.sample_id!r} does not know the rows of its source")
        values = np.asarray(values)
        if values.shape[0] != self.num_points:
            raise ShapeError(f"values must have {self.num_points} rows, got {values.shape[0]}")
        dtype = np.result_type(values.dtype, np.min_scalar_type(fill))
        out = np.full((self.source_rows, *values.shape[1:]), fill, dtype=dtype)
        out[self.source_index] = values
        return out

    def coordinates(self) -> np.ndarray:
        """The points' coordinates: ``points + origin`` in float64, or ``points`` without origin."""
        if self.origin is None:
            return self.points
        return self.points.astype(np.float64) + self.origin

    def content_hash(self) -> str:
        """Hash of the geometry and colours (the feature cache key of this sample)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.points).tobytes())
        if self.colors is not None:
            digest.update(np.ascontiguousarray(self.colors).tobytes())
        return digest.hexdigest()[:32]
