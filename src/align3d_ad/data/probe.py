"""A cheap look at a file: is it a point cloud, and can its header be read?

:func:`probe_point_cloud` reads at most the header (a few KiB; TIFF and ``.npz`` directories)
and tells three cases apart, so that a folder scan can skip what is not a cloud (a ``README.txt``,
a score array) and stop on a broken cloud before anything is scored:

* a point cloud whose header reads: a :class:`CloudProbe` with ``not_cloud=None``;
* not a point cloud at all: a :class:`CloudProbe` saying why (``not_cloud``);
* a file that is a point cloud by its format but cannot be read (empty, unreadable, malformed or
  truncated header): :class:`~align3d_ad.errors.DatasetFormatError` naming the file.

A full load (:func:`~align3d_ad.data.io.load_point_cloud`) can still fail later on the body.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetFormatError
from . import _pcd, _ply
from .formats import _check_file
from .io import SUPPORTED_SUFFIXES

#: Bytes read for a header (PLY and PCD headers, the first lines of a text cloud).
HEAD_BYTES = 1 << 16
_TEXT_SUFFIXES = (".txt", ".xyz")


@dataclass(frozen=True)
class CloudProbe:
    """What :func:`probe_point_cloud` found.

    Attributes:
        path: The file.
        not_cloud: Why the file is not a point cloud, or None when it is one.
        fields: Per-point fields its header names (PLY vertex properties, PCD fields).
    """

    path: Path
    not_cloud: str | None = None
    fields: tuple[str, ...] = ()


def _head(path: Path) -> tuple[bytes, int]:
    """The first :data:`HEAD_BYTES` of ``path`` and its size; unreadable files raise one line."""
    try:
        with path.open("rb") as fh:
            return fh.read(HEAD_BYTES), path.stat().st_size
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None


def _probe_text(path: Path) -> CloudProbe:
    head, size = _head(path)
    lines = head.split(b"\n")
    if len(head) < size and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    for number, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith("#"):
            continue
        words = line.replace(",", " ").split()
        try:
            [float(w) for w in words]
        except ValueError:
            words = []
        if len(words) < 3:
            return CloudProbe(path, f"line {number} is not 'x y z [label]' numbers")
        if len(words) > 4:
            raise DatasetFormatError(
                path,
                f"text point cloud must have 3 (x y z) or 4 (x y z label) columns, "
                f"got {len(words)} on line {number}",
            )
        return CloudProbe(path)
    return CloudProbe(path, "no 'x y z' line (empty or only comments)")


def _probe_ply(path: Path) -> CloudProbe:
    head, size = _head(path)
    fmt, elements, offset = _ply.parse_header(path, head)
    vertex, before = _ply._vertex_layout(path, elements)
    props = tuple(p for p, _ in vertex.properties)
    if not {"x", "y", "z"} <= set(props):
        raise DatasetFormatError(path, f"PLY has no x/y/z vertex properties (properties: {props})")
    if _ply.PLY_FORMATS[fmt] is not None and not any(e.has_list for e in before):
        item = sum(np.dtype(k).itemsize for _, k in vertex.properties)
        skip = sum(e.count * sum(np.dtype(k).itemsize for _, k in e.properties) for e in before)
        need = skip + vertex.count * item
        if size - offset < need:
            raise DatasetFormatError(
                path,
                f"PLY binary data must hold {vertex.count} vertices x {item} bytes "
                f"(+{skip} bytes before them), got {size - offset} bytes (file truncated)",
            )
    return CloudProbe(path, fields=props)


def _probe_pcd(path: Path) -> CloudProbe:
    head, size = _head(path)
    header, offset = _pcd.parse_header(path, head)
    missing = [axis for axis in ("x", "y", "z") if axis not in header.names]
    if missing:
        raise DatasetFormatError(
            path, f"PCD has no x/y/z fields (fields: {' '.join(header.names)})"
        )
    if header.encoding == "binary":
        need = header.points * header.dtype().itemsize
        if size - offset < need:
            raise DatasetFormatError(
                path,
                f"PCD binary data must hold POINTS={header.points} x {header.dtype().itemsize} "
                f"bytes = {need} bytes, got {size - offset} (file truncated)",
            )
    return CloudProbe(path, fields=tuple(n for n in header.names if n != _pcd.PCD_PADDING))


def _cloud_array_problem(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """Why an array of ``shape``/``dtype`` is not a point cloud, or None."""
    if dtype.kind not in "iuf":
        return f"array of dtype {dtype} is not numeric"
    if len(shape) == 2 and (shape[1] == 3 or shape[1] >= 6):
        return None
    if len(shape) == 3 and (shape[2] == 3 or shape[2] >= 6):
        return None
    return f"array of shape {shape} is not (N, 3), (N, >=6) xyz+rgb or (H, W, 3)"


def _probe_npy(path: Path) -> CloudProbe:
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read = np.lib.format.read_array_header_2_0  # 3.0 differs only in the encoding
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # ValueError on a bad magic string or header
        raise DatasetFormatError(path, f"cannot read .npy ({exc})") from None
    problem = _cloud_array_problem(shape, dtype)
    if problem is not None:
        return CloudProbe(path, problem)
    need = int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size - offset < need:
        raise DatasetFormatError(
            path, f".npy of shape {shape} must hold {need} data bytes; the file is truncated"
        )
    return CloudProbe(path)


def _probe_npz(path: Path) -> CloudProbe:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except zipfile.BadZipFile as exc:
        raise DatasetFormatError(path, f"cannot read .npz ({exc})") from None
    keys = sorted(n.removesuffix(".npy") for n in names)
    if "points" not in keys and "xyz" not in keys:
        return CloudProbe(path, f".npz has no 'points' or 'xyz' array (keys {keys})")
    return CloudProbe(path, fields=tuple(keys))


def _probe_tiff(path: Path) -> CloudProbe:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # tifffile raises many types on garbage
        raise DatasetFormatError(path, f"cannot read TIFF ({exc})") from None
    if len(shape) == 3 and axes.startswith("S") and shape[0] == 3:
        shape = (*shape[1:], 3)
    if len(shape) != 3 or shape[-1] != 3 or dtype.kind != "f":
        return CloudProbe(path, f"TIFF of shape {shape} {dtype} is not a float (H, W, 3) xyz grid")
    return CloudProbe(path)


_PROBES = {
    ".txt": _probe_text,
    ".xyz": _probe_text,
    ".ply": _probe_ply,
    ".pcd": _probe_pcd,
    ".npy": _probe_npy,
    ".npz": _probe_npz,
    ".tif": _probe_tiff,
    ".tiff": _probe_tiff,
}


def probe_point_cloud(path: str | Path) -> CloudProbe:
    """Say cheaply whether ``path`` is a point cloud :func:`load_point_cloud` can read.

    Returns:
        A :class:`CloudProbe`; ``not_cloud`` says why the file is not a point cloud (a text file
        whose first data line is not numbers, an array or TIFF of another shape, an ``.npz``
        without points), None when it is one.

    Raises:
        DatasetFormatError: Unsupported suffix, or a cloud that cannot be read: missing, empty,
            unreadable, malformed or truncated header.
    """
    path = Path(path)
    probe = _PROBES.get(path.suffix.lower())
    if probe is None:
        raise DatasetFormatError(
            path, f"unsupported point-cloud suffix {path.suffix.lower()!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)}",
        )  # fmt: skip
    if path.suffix.lower() in _TEXT_SUFFIXES and path.is_file() and path.stat().st_size == 0:
        return CloudProbe(path, "empty text file")
    _check_file(path)
    return probe(path)


__all__ = ["CloudProbe", "probe_point_cloud"]
