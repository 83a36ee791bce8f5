"""Cheap checks of dataset files before they are read: present, not empty, not truncated.

Only headers are read (a few kilobytes per file; for PNG the chunk lengths, by seeking): a TIFF,
PNG or binary PCD whose data runs past the end of the file is found without decoding it. ``test``
runs these checks over every file it will read before it scores the first sample, so one truncated
file in the last category stops the run at once instead of after an hour.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from pathlib import Path

from ...errors import DatasetFormatError
from .._pcd import parse_header as parse_pcd_header

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PCD_HEADER_BYTES = 1 << 16  # a PCD header is a dozen short lines


def check_file(path: str | Path) -> None:
    """Raise DatasetFormatError naming ``path`` when it is missing, empty or visibly truncated."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:  # missing, or a symlink that loops or points nowhere
        raise DatasetFormatError(path, f"file cannot be read ({err.strerror or err})") from None
    if not path.is_file():
        raise DatasetFormatError(path, "must be a file, got a directory")
    if size == 0:
        raise DatasetFormatError(path, "file is empty (0 bytes)")
    checker = _CHECKERS.get(path.suffix.lower())
    if checker is not None:
        checker(path, size)


def unreadable_entries(path: Path) -> list[Path]:
    """Non-hidden entries of ``path`` that are neither files nor folders (e.g. looping symlinks)."""
    return sorted(
        p for p in path.iterdir()
        if not p.name.startswith(".") and not p.is_file() and not p.is_dir()
    )  # fmt: skip


def describe_unreadable(path: Path) -> str:
    """Why ``path`` (neither a file nor a folder) cannot be read, in a few words."""
    if not path.is_symlink():
        return "neither a file nor a folder"
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loops (it points back to itself)"
        return "broken symlink (its target does not exist)"
    return "symlink to neither a file nor a folder"


def _truncated(path: Path, what: str, end: int, size: int) -> DatasetFormatError:
    return DatasetFormatError(
        path, f"file truncated: {what} must end at byte {end}, got a file of {size} bytes"
    )


def _check_tiff(path: Path, size: int) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            end = max(
                (int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts)), default=0
            )
    except Exception as exc:  # tifffile raises many types on garbage
        raise DatasetFormatError(path, f"cannot read TIFF ({exc})") from exc
    if end > size:
        raise _truncated(path, "the TIFF image data", end, size)


def _check_png(path: Path, size: int) -> None:
    with path.open("rb") as fh:
        if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return  # another image format under a .png name: the reader decides
        pos, image_data = len(PNG_SIGNATURE), False
        while pos + 8 <= size:
            fh.seek(pos)
            length, kind = struct.unpack(">I4s", fh.read(8))
            end = pos + 12 + length  # length, type, data, CRC
            if end > size:
                raise _truncated(path, f"PNG chunk {kind.decode('latin-1')!r}", end, size)
            if kind == b"IEND":
                return
            image_data |= kind == b"IDAT"
            pos = end
    if pos != size or not image_data:  # cut inside a chunk header, or before any image data
        raise _truncated(path, "the PNG image data", pos + 8, size)


def _check_pcd(path: Path, size: int) -> None:
    with path.open("rb") as fh:
        head = fh.read(PCD_HEADER_BYTES)
        header, offset = parse_pcd_header(path, head)
        if header.encoding == "binary":
            end = offset + header.points * header.dtype().itemsize
            if end > size:
                raise _truncated(path, f"PCD binary data of POINTS={header.points}", end, size)
        elif header.encoding == "binary_compressed" and header.points:
            fh.seek(offset)
            sizes = fh.read(8)
            packed = struct.unpack("<I", sizes[:4])[0] if len(sizes) == 8 else 0
            end = offset + 8 + packed
            if len(sizes) < 8 or end > size:
                raise _truncated(path, "the PCD binary_compressed block", end, size)


_CHECKERS: dict[str, Callable[[Path, int], None]] = {
    ".tiff": _check_tiff,
    ".tif": _check_tiff,
    ".png": _check_png,
    ".pcd": _check_pcd,
}
