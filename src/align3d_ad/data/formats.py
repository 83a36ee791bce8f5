"""Per-format point-cloud and image readers and writers (DATASETS.md).

Formats: organised xyz TIFF (MVTec 3D-AD), PCD v0.7 (Real3D-AD), PLY, whitespace/comma text
``x y z [label]`` (Real3D-AD gt), and PNG images (8-bit RGB, 8-bit masks, 16-bit Eyecandies depth).
Every bad input raises :class:`~align3d_ad.errors.DatasetFormatError` naming the file and the
problem; writes are atomic. :func:`~align3d_ad.data.io.load_point_cloud` turns any of these files
(and numpy ``.npy``/``.npz``) into a :class:`~align3d_ad.data.sample.PointCloudSample`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, atomic_write_bytes
from .._checks import check_shape
from ..errors import DatasetFormatError, ShapeError
from ._pcd import encode_pcd, parse_pcd
from ._ply import LABEL_THRESHOLD, encode_ply, parse_ply

#: First 8 bytes of every PNG file (PNG spec, section 5.2); IHDR bit depth/colour type follow.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: First bytes of every ``.npy`` file (numpy's format spec); a pickle starts with 0x80 instead.
NPY_MAGIC = b"\x93NUMPY"
#: Why a ``.npy`` holding Python objects is refused (it is never unpickled).
PICKLED_NPY = (
    "holds pickled Python objects, not a numeric array, and is refused: unpickling a file can run "
    "code. Save the points as numbers, e.g. np.save(path, points.astype(np.float32))"
)


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
        points: (N, 3) coordinates, written as ``float x y z`` (``double`` when float64).
        colors: (N, 3) float in [0, 1] (rounded to 0..255) or uint8, written as
            ``uchar red green blue``.
        fields: Extra scalar properties, name -> (N,) array (e.g. ``anomaly_score``); floats and
            64-bit ints are written as ``float``, bool as ``uchar``, smaller ints keep their type.
        binary: ``binary_little_endian`` when True, else ``ascii``.
    """
    data = encode_ply(points, colors=colors, fields=fields, binary=binary)
    atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------------
# Text and images


def read_xyz_txt(
    path: str | Path, *, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a text point cloud, one point per line: ``x y z`` or ``x y z label``.

    Values may be separated by spaces, tabs or commas (Real3D-AD gt uses spaces,
    Anomaly-ShapeNet commas); lines starting with ``#`` are comments.

    Args:
        path: ``.txt``/``.xyz`` file.
        dtype: Of the points (the text is parsed as float64).

    Returns:
        (N, 3) points of ``dtype`` and bool (N,) labels (value > 0.5) or None for 3 columns.

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
    return table[:, :3].astype(dtype), labels


def read_npy(path: str | Path) -> np.ndarray:
    """Read a numeric ``.npy`` array; never unpickles.

    Raises:
        DatasetFormatError: Missing/empty/truncated file, no ``.npy`` header, or Python objects
            (an object array or a plain pickle), which are refused, naming the file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with path.open("rb") as fh:
            if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                fh.seek(0)
                if fh.read(1) == b"\x80":  # pickle protocol 2+ opcode
                    raise DatasetFormatError(path, PICKLED_NPY)
                raise DatasetFormatError(path, "is not a .npy file (it has no NUMPY header)")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read = np.lib.format.read_array_header_2_0  # 3.0 differs only in the encoding
            if read(fh)[2].hasobject:
                raise DatasetFormatError(path, PICKLED_NPY)
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except DatasetFormatError:
        raise
    except Exception as exc:  # ValueError, OSError, EOFError on bad or truncated files
        raise DatasetFormatError(path, f"cannot read .npy ({exc})") from None


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


__all__ = [
    "read_image",
    "read_npy",
    "read_pcd",
    "read_ply",
    "read_tiff_xyz",
    "read_xyz_txt",
    "write_pcd",
    "write_ply",
    "write_tiff_xyz",
]
