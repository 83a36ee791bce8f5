"""Point-cloud and image file I/O: one place that turns files into :class:`PointCloudSample`.

Formats (DATASETS.md): organised xyz TIFF (MVTec 3D-AD), PCD v0.7 (Real3D-AD), PLY, numpy
``.npy``/``.npz``, whitespace/comma text ``x y z [label]`` (Real3D-AD gt), and PNG images
(8-bit RGB, 8-bit masks, 16-bit Eyecandies depth). Every bad input raises
:class:`~align3d_ad.errors.DatasetFormatError` naming the file and the problem; writes are atomic.

Conventions of :func:`load_point_cloud`:

* Invalid points (NaN/inf or the all-zero "missing" marker) are dropped; their count is stored in
  ``sample.meta["num_dropped"]``.
* Organised sources (TIFF, (H, W, 3) arrays, PCD with HEIGHT > 1) keep ``grid_shape`` and
  ``grid_index`` (row-major, ``row * W + col``), so scores can be scattered back onto the grid.
* Colours become float32 in [0, 1]: uint8/0..255 values are divided by 255, uint16 by 65535.
* A per-point ``label`` field/column marks anomalous points where its value is > 0.5.
* Other per-point PLY/PCD fields are kept in ``sample.meta["fields"]`` (filtered like the points).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, atomic_write_bytes
from .._checks import check_shape
from ..errors import DatasetFormatError, ShapeError
from ._pcd import encode_pcd, parse_pcd
from ._ply import LABEL_THRESHOLD, encode_ply, normalise_colors, parse_ply, split_fields
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
#: First 8 bytes of every PNG file (PNG spec, section 5.2); IHDR bit depth/colour type follow.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Geometry keys that come from the file and cannot be passed through ``**fields``.
_FILE_KEYS = ("points", "grid_shape", "grid_index")


# ----------------------------------------------------------------------------------------------
# Small helpers


def _read_bytes(path: str | Path) -> bytes:
    """Read a whole file, raising DatasetFormatError when it is missing, a folder or empty."""
    path = Path(path)
    _check_file(path)
    return path.read_bytes()


def _check_file(path: Path) -> None:
    """Raise DatasetFormatError when ``path`` is missing, a folder or empty."""
    if not path.exists():
        raise DatasetFormatError(path, "file does not exist; check the path")
    if not path.is_file():
        raise DatasetFormatError(path, "must be a file, got a directory")
    if path.stat().st_size == 0:
        raise DatasetFormatError(path, "file is empty (0 bytes)")


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

    ``colors``/``labels``/``extra`` have M rows; ``fields["colors"]``/``fields["point_labels"]``,
    when given, override them and must also have M rows (or the grid's (H, W, ...) shape).
    """
    bad = [k for k in _FILE_KEYS if k in fields]
    if bad:
        raise TypeError(f"load_point_cloud takes {', '.join(bad)} from the file, not from **fields")
    m = xyz.shape[0]
    keep = valid_point_mask(xyz)
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
        grid = {"grid_shape": grid_shape, "grid_index": np.flatnonzero(keep)}
    return PointCloudSample(
        xyz[keep],
        colors=None if per_point["colors"] is None else per_point["colors"][keep],
        point_labels=None if per_point["point_labels"] is None else per_point["point_labels"][keep],
        meta=meta,
        **grid,
        **fields,
    )


def _xyz_from_fields(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Stack the x, y, z fields of a PLY/PCD dict (their parsers check they exist) to (N, 3)."""
    return np.stack([fields[a].reshape(-1) for a in ("x", "y", "z")], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# TIFF


def read_tiff_xyz(path: str | Path) -> np.ndarray:
    """Read an organised point cloud stored as a 3-channel float TIFF (MVTec 3D-AD ``xyz``).

    Planar TIFFs (stored channels-first, read as (3, H, W)) are recognised from the file's
    sample-axis order and transposed, so the result is always (H, W, 3).

    Args:
        path: ``.tiff``/``.tif`` file.

    Returns:
        float32 (H, W, 3) x, y, z per pixel; missing pixels stay as stored (zeros or NaN).

    Raises:
        DatasetFormatError: Missing/empty/unreadable file, or not a 3-channel float image.
    """
    import tifffile

    path = Path(path)
    _check_file(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            xyz = series.asarray()
    except Exception as exc:  # tifffile raises many types on garbage
        raise DatasetFormatError(path, f"cannot read TIFF ({exc})") from exc
    if xyz.ndim == 3 and axes.startswith("S") and xyz.shape[0] == 3:
        xyz = np.moveaxis(xyz, 0, -1)  # planar (3, H, W) -> (H, W, 3)
    if xyz.ndim != 3 or xyz.shape[-1] != 3 or xyz.dtype.kind != "f":
        raise DatasetFormatError(
            path,
            f"xyz TIFF must be a float (H, W, 3) image, got shape {xyz.shape} "
            f"(axes {axes!r}) and dtype {xyz.dtype}",
        )
    return np.ascontiguousarray(xyz, dtype=np.float32)


def write_tiff_xyz(path: str | Path, xyz: np.ndarray) -> None:
    """Write an organised (H, W, 3) point cloud as an uncompressed float32 RGB TIFF, atomically.

    Args:
        path: Target ``.tiff`` file (parent folders are created).
        xyz: (H, W, 3) float coordinates; zeros or NaN mark missing pixels.
    """
    import tifffile

    xyz = np.asarray(xyz)
    check_shape(xyz, "H W 3", name="xyz")
    if xyz.dtype.kind != "f":
        raise ShapeError(f"xyz must be a float array, got dtype {xyz.dtype}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, xyz.astype(np.float32), photometric="rgb")


# ----------------------------------------------------------------------------------------------
# PCD and PLY


def read_pcd(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PCD v0.7 file (``ascii``, ``binary`` or ``binary_compressed``; SIZE 1/2/4/8).

    An organised PCD (HEIGHT > 1) is returned flattened row-major (N = WIDTH * HEIGHT);
    :func:`load_point_cloud` restores the grid.

    Args:
        path: ``.pcd`` file.

    Returns:
        Field name -> (N,) array (COUNT 1) or (N, COUNT), dtype from TYPE/SIZE, in file order;
        padding fields ``_`` are dropped.

    Raises:
        DatasetFormatError: Missing/empty file, malformed header, no x/y/z, truncated data.
    """
    path = Path(path)
    return parse_pcd(path, _read_bytes(path)).fields


def write_pcd(
    path: str | Path,
    points: np.ndarray,
    *,
    fields: dict[str, np.ndarray] | None = None,
    encoding: str = "binary",
) -> None:
    """Write a PCD v0.7 file (unorganised: WIDTH N, HEIGHT 1), atomically.

    Args:
        path: Target ``.pcd`` file.
        points: (N, 3) coordinates; float64 is written as ``F 8``, everything else as ``F 4``.
        fields: Extra fields, name -> (N,) or (N, COUNT) numeric array; the dtype is kept
            (bool -> ``U 1``, float16 -> ``F 4``).
        encoding: ``"ascii"``, ``"binary"`` or ``"binary_compressed"`` (LZF, field-major).
    """
    atomic_write_bytes(path, encode_pcd(points, fields=fields, encoding=encoding))


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read the vertex properties of a PLY file (ascii or binary, either byte order).

    Args:
        path: ``.ply`` file.

    Returns:
        Vertex property name -> (N,) array in the file's type, in file order. Other elements
        (faces, ...) are ignored.

    Raises:
        DatasetFormatError: Missing/empty file, malformed header, no x/y/z, truncated data.
    """
    path = Path(path)
    return parse_ply(path, _read_bytes(path))


def write_ply(
    path: str | Path,
    points: np.ndarray,
    *,
    colors: np.ndarray | None = None,
    fields: dict[str, np.ndarray] | None = None,
    binary: bool = True,
) -> None:
    """Write a point cloud as PLY (binary little endian by default), atomically.

    Args:
        path: Target ``.ply`` file.
        points: (N, 3) coordinates, written as ``float x y z``.
        colors: (N, 3) float in [0, 1] (rounded to 0..255) or uint8, written as
            ``uchar red green blue``.
        fields: Extra scalar properties, name -> (N,) array (e.g. ``anomaly_score``); floats and
            64-bit ints are written as ``float``, bool as ``uchar``, smaller ints keep their type.
        binary: ``binary_little_endian`` when True, else ``ascii``.
    """
    data = encode_ply(points, colors=colors, fields=fields, binary=binary)
    atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------------
# Text, numpy and images


def read_xyz_txt(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a text point cloud, one point per line: ``x y z`` or ``x y z label``.

    Values may be separated by spaces, tabs or commas (Real3D-AD gt uses spaces,
    Anomaly-ShapeNet commas); lines starting with ``#`` are comments.

    Args:
        path: ``.txt``/``.xyz`` file.

    Returns:
        float32 (N, 3) points and bool (N,) labels (value > 0.5) or None for 3 columns.

    Raises:
        DatasetFormatError: Missing/empty file, non-numeric text, ragged lines, wrong column count.
    """
    path = Path(path)
    raw = _read_bytes(path).replace(b",", b" ")
    try:
        table = np.loadtxt(io.BytesIO(raw), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        raise DatasetFormatError(path, f"text point cloud must hold numbers only: {exc}") from None
    if table.shape[1] not in (3, 4):
        raise DatasetFormatError(
            path,
            f"text point cloud must have 3 (x y z) or 4 (x y z label) columns, "
            f"got {table.shape[1]}",
        )
    labels = table[:, 3] > LABEL_THRESHOLD if table.shape[1] == 4 else None
    return table[:, :3].astype(np.float32), labels


def read_image(path: str | Path) -> np.ndarray:
    """Read an image with Pillow, keeping integer values exact.

    Args:
        path: PNG (or any Pillow format) file.

    Returns:
        (H, W) for grayscale: uint8 (8-bit), uint16 (16-bit, e.g. Eyecandies depth), palette
        images as their uint8 indices; (H, W, C) uint8 for RGB/RGBA/LA; float32 for float images.

    Raises:
        DatasetFormatError: Missing/empty/unreadable file, or a 16-bit colour PNG (Pillow would
            silently reduce it to 8 bits; convert it to 16-bit grayscale or TIFF).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    raw = _read_bytes(path)
    png_bit_depth, png_color_type = (
        (raw[24], raw[25]) if raw[:8] == PNG_SIGNATURE and len(raw) > 25 else (0, 0)
    )
    if png_bit_depth == 16 and png_color_type != 0:
        raise DatasetFormatError(
            path,
            "16-bit colour PNGs are not supported (Pillow reduces them to 8 bits); "
            "store 16-bit data as grayscale PNG or TIFF",
        )
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "1":
                image = image.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetFormatError(path, f"cannot read image ({exc})") from exc
    if mode.startswith("I;16") or mode == "I" and png_bit_depth == 16:
        array = array.astype(np.uint16)
    return np.ascontiguousarray(array)


def _load_npy(path: Path, fields: dict) -> PointCloudSample:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError, OSError, EOFError on bad or truncated files
        raise DatasetFormatError(path, f"cannot read .npy ({exc})") from exc
    if array.dtype.kind not in "iuf":
        raise DatasetFormatError(path, f".npy must hold numbers, got dtype {array.dtype}")
    if array.ndim == 3 and (array.shape[2] == 3 or array.shape[2] >= 6):
        h, w = array.shape[:2]
        flat = array.reshape(h * w, -1)
        colors = flat[:, 3:6] if flat.shape[1] >= 6 else None
        return _build_sample(
            path, flat[:, :3].astype(np.float32), colors=colors, grid_shape=(h, w), fields=fields
        )
    if array.ndim == 2 and (array.shape[1] == 3 or array.shape[1] >= 6):
        colors = array[:, 3:6] if array.shape[1] >= 6 else None
        return _build_sample(path, array[:, :3].astype(np.float32), colors=colors, fields=fields)
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
        xyz.reshape(m, 3).astype(np.float32),
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
    xyz, labels = read_xyz_txt(path)
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
    docstring for the conventions (invalid points dropped, grids kept, colours in [0, 1]).

    Args:
        path: The file.
        **fields: :class:`PointCloudSample` fields to set (``category``, ``sample_id``, ``label``,
            ``defect_type``, ``meta``, ``source``; ``source`` defaults to ``path``).
            ``colors``/``point_labels`` replace the file's own and must have one entry per point
            or grid cell of the file (e.g. an (H, W, 3) RGB image and an (H, W) mask for a TIFF).

    Returns:
        The sample; ``meta["num_dropped"]`` counts dropped invalid points and
        ``meta["fields"]`` holds other per-point PLY/PCD fields.

    Raises:
        DatasetFormatError: Unsupported suffix, or any problem with the file's content.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "cloud.npy"
        >>> np.save(path, np.array([[0, 0, 0], [1, 2, 3]], dtype=np.float32))
        >>> load_point_cloud(path, category="demo").points
        array([[1., 2., 3.]], dtype=float32)
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
    "read_image",
    "read_pcd",
    "read_ply",
    "read_tiff_xyz",
    "read_xyz_txt",
    "write_pcd",
    "write_ply",
    "write_tiff_xyz",
]
