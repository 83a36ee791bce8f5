"""Point-cloud loading: one place that turns files into :class:`PointCloudSample`.

:func:`load_point_cloud` dispatches on the file suffix (:data:`SUPPORTED_SUFFIXES`): organised xyz
TIFF, PCD, PLY and text go through the readers of :mod:`.formats`; numpy ``.npy`` ((N, 3),
(N, >=6) xyz+rgb or (H, W, 3)) and ``.npz`` (``points``/``xyz`` plus optional ``colors`` and
``labels``) are read here. Every bad input raises :class:`~align3d_ad.errors.DatasetFormatError`
naming the file and the problem.

Conventions of :func:`load_point_cloud`:

* Invalid points are dropped: NaN/inf rows always, all-zero rows only in organised sources (the
  grid's "missing" marker; (0, 0, 0) is a real point of an unorganised cloud). Their count is
  stored in ``sample.meta["num_dropped"]``.
* ``source_rows``/``source_index`` record the file's row count and the row of every kept point,
  so :meth:`~PointCloudSample.to_rows` gives one value per row of the file (NaN where dropped).
* Organised sources (TIFF, (H, W, 3) arrays, PCD with HEIGHT > 1) keep ``grid_shape`` and
  ``grid_index`` (row-major, ``row * W + col``), so scores can be scattered back onto the grid.
* Points are float32. Float64 coordinates (PLY ``double``, PCD ``F 8``, float64 ``.npy``/``.npz``,
  text) far from 0 for the cloud's size, which float32 would round coarsely (a scan in a map's or
  a plant's frame), are stored relative to ``sample.origin`` (float64) instead, their detail
  kept; :meth:`~PointCloudSample.coordinates` gives them back and scored PLY files carry them.
* Colours become float32 in [0, 1]: uint8/0..255 values are divided by 255, uint16 by 65535.
* A per-point ``label`` field/column marks anomalous points where its value is > 0.5.
* Other per-point PLY/PCD fields are kept in ``sample.meta["fields"]`` (filtered like the points).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DatasetFormatError, ShapeError
from ._pcd import parse_pcd
from ._ply import LABEL_THRESHOLD, normalise_colors, split_fields
from .formats import _check_file, _read_bytes, read_npy, read_ply, read_tiff_xyz, read_xyz_txt
from .sample import PointCloudSample, valid_point_mask

logger = logging.getLogger(__name__)

#: File suffixes :func:`load_point_cloud` understands (lower case).
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".tiff",
    ".tif",
    ".pcd",
    ".ply",
    ".npy",
    ".npz",
    ".xyz",
    ".txt",
)
#: Geometry keys that come from the file and cannot be passed through ``**fields``.
_FILE_KEYS = ("points", "grid_shape", "grid_index", "source_rows", "source_index")


# ----------------------------------------------------------------------------------------------
# Sample building


def _one_row_per_point(values, m: int, name: str) -> np.ndarray:
    """Reshape a caller's (M, ...) or grid-shaped (H, W, ...) array to one row per file point."""
    values = np.asarray(values)
    tail = (3,) if name == "colors" else ()
    if values.size != m * int(np.prod(tail)):
        raise ShapeError(
            f"{name} must have one entry per point or grid cell of the file ({m}), "
            f"got shape {values.shape}"
        )
    return values.reshape(m, *tail)


def _build_sample(
    path: Path,
    xyz: np.ndarray,
    *,
    colors: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None,
    grid_shape: tuple[int, int] | None = None,
    fields: dict,
) -> PointCloudSample:
    """Drop invalid rows of (M, 3) ``xyz`` and everything aligned with it, then build the sample.

    All-zero rows count as invalid only when ``grid_shape`` is given (organised sources).

    ``colors``/``labels``/``extra`` have M rows; ``fields["colors"]``/``fields["point_labels"]``,
    when given, override them and must also have M rows (or the grid's (H, W, ...) shape).
    """
    bad = [k for k in _FILE_KEYS if k in fields]
    if bad:
        raise TypeError(f"load_point_cloud takes {', '.join(bad)} from the file, not from **fields")
    m = xyz.shape[0]
    keep = valid_point_mask(xyz, zero_is_missing=grid_shape is not None)
    rows = np.flatnonzero(keep)
    per_point = {"colors": colors, "point_labels": labels}
    for key in per_point:
        given = fields.pop(key, None)
        if given is not None:
            per_point[key] = _one_row_per_point(given, m, key)
    if per_point["colors"] is not None:
        per_point["colors"] = normalise_colors(path, per_point["colors"])
    meta = dict(fields.pop("meta", None) or {})
    meta["num_dropped"] = int(m - keep.sum())
    if extra:
        meta["fields"] = {k: v[keep] for k, v in extra.items()}
    fields.setdefault("source", path)
    grid = {}
    if grid_shape is not None:
        grid = {"grid_shape": grid_shape, "grid_index": rows}
    return PointCloudSample(
        xyz[rows],
        colors=None if per_point["colors"] is None else per_point["colors"][rows],
        point_labels=None if per_point["point_labels"] is None else per_point["point_labels"][rows],
        meta=meta,
        source_rows=m,
        source_index=rows,
        **grid,
        **fields,
    )


def _xyz_from_fields(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Stack the x, y, z fields of a PLY/PCD dict (their parsers check they exist) to (N, 3)."""
    return _coordinates(np.stack([fields[a].reshape(-1) for a in ("x", "y", "z")], axis=1))


def _coordinates(xyz: np.ndarray) -> np.ndarray:
    """float64 coordinates stay float64 (the sample keeps their detail with an origin), others
    become float32."""
    return xyz if xyz.dtype == np.float64 else xyz.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Numpy


def _load_npy(path: Path, fields: dict) -> PointCloudSample:
    array = read_npy(path)  # never unpickles: Python objects are refused, naming the file
    if array.dtype.kind not in "iuf":
        raise DatasetFormatError(path, f".npy must hold numbers, got dtype {array.dtype}")
    if array.ndim == 3 and (array.shape[2] == 3 or array.shape[2] >= 6):
        h, w = array.shape[:2]
        flat = array.reshape(h * w, -1)
        colors = flat[:, 3:6] if flat.shape[1] >= 6 else None
        return _build_sample(
            path, _coordinates(flat[:, :3]), colors=colors, grid_shape=(h, w), fields=fields
        )
    if array.ndim == 2 and (array.shape[1] == 3 or array.shape[1] >= 6):
        colors = array[:, 3:6] if array.shape[1] >= 6 else None
        return _build_sample(path, _coordinates(array[:, :3]), colors=colors, fields=fields)
    raise DatasetFormatError(
        path, f".npy must have shape (N, 3), (N, >=6) xyz+rgb or (H, W, 3), got {array.shape}"
    )


def _load_npz(path: Path, fields: dict) -> PointCloudSample:
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except Exception as exc:  # BadZipFile, ValueError, OSError, EOFError
        raise DatasetFormatError(path, f"cannot read .npz ({exc})") from exc
    key = "points" if "points" in data else "xyz" if "xyz" in data else None
    if key is None:
        raise DatasetFormatError(
            path, f".npz must have a 'points' or 'xyz' array, got keys {sorted(data)}"
        )
    xyz = data[key]
    if not (xyz.ndim in (2, 3) and xyz.shape[-1] == 3 and xyz.dtype.kind in "iuf"):
        raise DatasetFormatError(
            path, f".npz '{key}' must be numeric (N, 3) or (H, W, 3), got {xyz.shape} {xyz.dtype}"
        )
    m = int(np.prod(xyz.shape[:-1]))
    colors, labels = data.get("colors"), data.get("labels")
    try:
        colors = None if colors is None else _one_row_per_point(colors, m, "colors")
        labels = None if labels is None else _one_row_per_point(labels, m, "labels")
    except ShapeError as exc:
        raise DatasetFormatError(path, f".npz arrays must match '{key}': {exc}") from None
    return _build_sample(
        path,
        _coordinates(xyz.reshape(m, 3)),
        colors=colors,
        labels=None if labels is None else labels > LABEL_THRESHOLD,
        grid_shape=xyz.shape[:2] if xyz.ndim == 3 else None,
        fields=fields,
    )


# ----------------------------------------------------------------------------------------------
# Dispatch


def _load_tiff(path: Path, fields: dict) -> PointCloudSample:
    xyz = read_tiff_xyz(path)
    h, w = xyz.shape[:2]
    return _build_sample(path, xyz.reshape(h * w, 3), grid_shape=(h, w), fields=fields)


def _load_pcd(path: Path, fields: dict) -> PointCloudSample:
    data = parse_pcd(path, _read_bytes(path))
    xyz = _xyz_from_fields(data.fields)
    colors, labels, rest = split_fields(path, data.fields)
    height, width = data.header.height, data.header.width
    grid = (height, width) if height > 1 else None
    return _build_sample(
        path, xyz, colors=colors, labels=labels, extra=rest, grid_shape=grid, fields=fields
    )


def _load_ply(path: Path, fields: dict) -> PointCloudSample:
    data = read_ply(path)
    xyz = _xyz_from_fields(data)
    colors, labels, rest = split_fields(path, data)
    return _build_sample(path, xyz, colors=colors, labels=labels, extra=rest, fields=fields)


def _load_txt(path: Path, fields: dict) -> PointCloudSample:
    xyz, labels = read_xyz_txt(path, dtype=np.float64)  # text may hold more than float32 keeps
    return _build_sample(path, xyz, labels=labels, fields=fields)


_LOADERS: dict[str, Callable[[Path, dict], PointCloudSample]] = {
    ".tiff": _load_tiff,
    ".tif": _load_tiff,
    ".pcd": _load_pcd,
    ".ply": _load_ply,
    ".npy": _load_npy,
    ".npz": _load_npz,
    ".xyz": _load_txt,
    ".txt": _load_txt,
}


def load_point_cloud(path: str | Path, **fields) -> PointCloudSample:
    """Load any supported point-cloud file as a :class:`PointCloudSample`.

    Dispatches on the (case-insensitive) suffix, see :data:`SUPPORTED_SUFFIXES` and the module
    docstring for the conventions (invalid points dropped, source rows and grids remembered,
    colours in [0, 1]).

    Args:
        path: The file.
        **fields: :class:`PointCloudSample` fields to set (``category``, ``sample_id``, ``label``,
            ``defect_type``, ``meta``, ``source``; ``source`` defaults to ``path``).
            ``colors``/``point_labels`` replace the file's own and must have one entry per point
            or grid cell of the file (e.g. an (H, W, 3) RGB image and an (H, W) mask for a TIFF).

    Returns:
        The sample; ``meta["num_dropped"]`` counts dropped invalid points,
        ``source_rows``/``source_index`` map its points to the file's rows and
        ``meta["fields"]`` holds other per-point PLY/PCD fields.

    Raises:
        DatasetFormatError: Unsupported suffix, or any problem with the file's content.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "cloud.npy"
        >>> np.save(path, np.array([[0, 0, 0], [np.nan, 0, 1], [1, 2, 3]], dtype=np.float32))
        >>> sample = load_point_cloud(path, category="demo")
        >>> sample.points
        array([[0., 0., 0.],
               [1., 2., 3.]], dtype=float32)
        >>> sample.to_rows(sample.points[:, 2])
        array([ 0., nan,  3.], dtype=float32)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise DatasetFormatError(
            path,
            f"unsupported point-cloud suffix {suffix!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)}",
        )
    _check_file(path)
    sample = loader(path, dict(fields))
    logger.debug("loaded %s: %d points", path, sample.num_points)
    return sample


__all__ = [
    "SUPPORTED_SUFFIXES",
    "load_point_cloud",
]
