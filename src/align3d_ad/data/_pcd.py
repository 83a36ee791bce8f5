"""PCD v0.7 codec (PCL's point-cloud format), vectorised with numpy structured dtypes.

Format reference: https://pointclouds.org/documentation/tutorials/pcd_file_format.html and PCL's
``io/src/pcd_io.cpp``. The header is ``VERSION, FIELDS, SIZE, TYPE, COUNT, WIDTH, HEIGHT,
VIEWPOINT, POINTS, DATA``; the body is one of

* ``ascii``: one whitespace-separated line per point;
* ``binary``: little-endian records packed point after point (padding fields ``_`` included);
* ``binary_compressed``: uint32 compressed size, uint32 raw size, then one LZF block holding the
  fields one after the other ("field-major": all x, then all y, ...; a field with COUNT c stores
  (N, c) contiguously; padding fields ``_`` are left out), as PCL writes it.

LZF is done by the ``lzf`` C extension (package ``python-neo-lzf``), the one ``pypcd4`` depends on;
we parse the PCD ourselves because pypcd4 reads COUNT > 1 fields of compressed files in another
layout than PCL, splits ascii lines on single spaces only and raises bare numpy errors.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetFormatError
from ._ply import point_columns

logger = logging.getLogger(__name__)

#: PCD TYPE letter and SIZE (bytes) -> numpy dtype (little endian), from the PCD spec.
PCD_DTYPES: dict[tuple[str, int], str] = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("I", 1): "i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
    ("U", 1): "u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
}
#: Encodings named on the ``DATA`` line.
PCD_ENCODINGS = ("ascii", "binary", "binary_compressed")
#: Name PCL gives padding fields; their bytes are skipped.
PCD_PADDING = "_"
#: Packed-colour fields that PCL writes as uint32 integers in ascii files although TYPE is F.
PCD_PACKED_RGB = ("rgb", "rgba")
#: The header must end (with its DATA line) within this many lines.
MAX_HEADER_LINES = 64
_DEFAULT_VIEWPOINT = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


@dataclass
class PcdHeader:
    """The parsed header of a PCD file (one entry per FIELDS name in ``names``/``sizes``/...)."""

    names: list[str]
    sizes: list[int]
    types: list[str]
    counts: list[int]
    width: int
    height: int
    points: int
    encoding: str
    viewpoint: tuple[float, ...] = _DEFAULT_VIEWPOINT

    def dtype(self) -> np.dtype:
        """Packed structured dtype of one binary record (padding fields renamed ``_pad<i>``)."""
        parts = []
        for i, (name, size, kind, count) in enumerate(
            zip(self.names, self.sizes, self.types, self.counts)
        ):
            key = f"_pad{i}" if name == PCD_PADDING else name
            base = PCD_DTYPES[(kind, size)]
            parts.append((key, base) if count == 1 else (key, base, (count,)))
        return np.dtype(parts)

    def text(self) -> str:
        """The header as PCL writes it, ending with the DATA line and a newline."""
        return "".join(
            [
                "# .PCD v0.7 - Point Cloud Data file format\n",
                "VERSION 0.7\n",
                f"FIELDS {' '.join(self.names)}\n",
                f"SIZE {' '.join(map(str, self.sizes))}\n",
                f"TYPE {' '.join(self.types)}\n",
                f"COUNT {' '.join(map(str, self.counts))}\n",
                f"WIDTH {self.width}\nHEIGHT {self.height}\n",
                f"VIEWPOINT {' '.join(f'{v:g}' for v in self.viewpoint)}\n",
                f"POINTS {self.points}\nDATA {self.encoding}\n",
            ]
        )


@dataclass
class PcdData:
    """A decoded PCD file: header and per-field arrays ((N,) for COUNT 1, else (N, COUNT))."""

    header: PcdHeader
    fields: dict[str, np.ndarray] = field(default_factory=dict)


def _ints(path: Path, key: str, values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DatasetFormatError(
            path, f"PCD header {key} must hold integers, got {' '.join(values)!r}"
        ) from None


def _header_lines(path: Path, raw: bytes) -> tuple[dict[str, list[str]], int]:
    """Split the header into ``KEY -> values`` and return the byte offset of the body."""
    entries: dict[str, list[str]] = {}
    pos = 0
    for _ in range(MAX_HEADER_LINES):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        entries[key.upper()] = values
        if key.upper() == "DATA":
            return entries, min(pos, len(raw))
        if pos > len(raw):
            break
    raise DatasetFormatError(
        path, "PCD header must end with a DATA line within the first lines; this is not a PCD file"
    )


def parse_header(path: Path, raw: bytes) -> tuple[PcdHeader, int]:
    """Parse and validate a PCD header; return it and the byte offset where the data starts."""
    entries, offset = _header_lines(path, raw)
    for key in ("FIELDS", "SIZE", "TYPE", "DATA"):
        if not entries.get(key):
            raise DatasetFormatError(path, f"PCD header must have a {key} line, got none")
    names = entries["FIELDS"]
    sizes = _ints(path, "SIZE", entries["SIZE"])
    types = [t.upper() for t in entries["TYPE"]]
    counts = _ints(path, "COUNT", entries.get("COUNT", ["1"] * len(names)))
    for key, values in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(values) != len(names):
            raise DatasetFormatError(
                path,
                f"PCD header {key} must have {len(names)} entries (one per field), "
                f"got {len(values)}",
            )
    for name, size, kind, count in zip(names, sizes, types, counts):
        if (kind, size) not in PCD_DTYPES or count < 1:
            raise DatasetFormatError(
                path,
                f"PCD field {name!r} must have TYPE F/I/U with SIZE 1/2/4/8 (F: 4/8) and "
                f"COUNT >= 1, got TYPE {kind} SIZE {size} COUNT {count}",
            )
    real = [n for n in names if n != PCD_PADDING]
    if len(set(real)) != len(real):
        raise DatasetFormatError(path, f"PCD field names must be unique, got {' '.join(names)}")
    encoding = entries["DATA"][0].lower()
    if encoding not in PCD_ENCODINGS:
        raise DatasetFormatError(
            path, f"PCD DATA must be one of {', '.join(PCD_ENCODINGS)}, got {encoding!r}"
        )
    width = _ints(path, "WIDTH", entries.get("WIDTH", ["0"]))[0]
    height = _ints(path, "HEIGHT", entries.get("HEIGHT", ["1"]))[0]
    points = _ints(path, "POINTS", entries.get("POINTS", [str(width * height)]))[0]
    if min(width, height, points) < 0:
        raise DatasetFormatError(path, "PCD WIDTH, HEIGHT and POINTS must be >= 0")
    if width * height != points:
        logger.warning(
            "%s: PCD WIDTH*HEIGHT=%d != POINTS=%d; using POINTS, unorganised",
            path,
            width * height,
            points,
        )
        width, height = points, 1
    try:
        viewpoint = tuple(float(v) for v in entries.get("VIEWPOINT", _DEFAULT_VIEWPOINT))
    except ValueError:
        viewpoint = _DEFAULT_VIEWPOINT
    header = PcdHeader(names, sizes, types, counts, width, height, points, encoding, viewpoint)
    return header, offset


def _split_records(header: PcdHeader, records: np.ndarray) -> dict[str, np.ndarray]:
    """Structured (N,) records -> native-endian per-field arrays, padding dropped."""
    out = {}
    for name in header.names:
        if name == PCD_PADDING:
            continue
        column = records[name]
        out[name] = column.astype(column.dtype.newbyteorder("="))  # a writable copy
    return out


def _decode_ascii(path: Path, header: PcdHeader, body: bytes) -> dict[str, np.ndarray]:
    n = header.points
    width = sum(header.counts)
    try:
        table = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2, max_rows=n, comments="#")
    except ValueError as exc:
        raise DatasetFormatError(path, f"PCD ascii data must be numbers: {exc}") from None
    if table.shape[0] < n:
        raise DatasetFormatError(
            path, f"PCD ascii data must have POINTS={n} lines, got {table.shape[0]} (truncated?)"
        )
    if table.shape[1] != width:
        raise DatasetFormatError(
            path, f"PCD ascii lines must have {width} values (sum of COUNT), got {table.shape[1]}"
        )
    out, col = {}, 0
    for name, size, kind, count in zip(header.names, header.sizes, header.types, header.counts):
        block = table[:, col : col + count]
        col += count
        if name == PCD_PADDING:
            continue
        dtype = np.dtype(PCD_DTYPES[(kind, size)]).newbyteorder("=")
        integral = np.isfinite(block).all() and (block == np.round(block)).all()
        if name in PCD_PACKED_RGB and (kind, size) == ("F", 4) and integral:
            block = block.astype(np.uint32).view(np.float32)  # PCL writes packed rgb as uint32
        block = block.astype(dtype)
        out[name] = block[:, 0].copy() if count == 1 else np.ascontiguousarray(block)
    return out


def _decode_binary(path: Path, header: PcdHeader, body: bytes) -> dict[str, np.ndarray]:
    dtype = header.dtype()
    need = header.points * dtype.itemsize
    if len(body) < need:
        raise DatasetFormatError(
            path,
            f"PCD binary data must hold POINTS={header.points} x {dtype.itemsize} bytes = "
            f"{need} bytes, got {len(body)} (file truncated)",
        )
    records = np.frombuffer(body, dtype=dtype, count=header.points)
    return _split_records(header, records)


def _decompress(path: Path, body: bytes) -> tuple[bytes, int]:
    import lzf  # from python-neo-lzf, a pypcd4 dependency

    if len(body) < 8:
        raise DatasetFormatError(
            path, f"PCD binary_compressed data must start with 8 size bytes, got {len(body)} bytes"
        )
    packed, unpacked = struct.unpack("<II", body[:8])
    if len(body) - 8 < packed:
        raise DatasetFormatError(
            path,
            f"PCD binary_compressed block must hold {packed} bytes, got {len(body) - 8} "
            "(file truncated)",
        )
    if unpacked == 0:
        return b"", 0
    try:
        raw = lzf.decompress(body[8 : 8 + packed], unpacked)
    except ValueError as exc:
        raise DatasetFormatError(path, f"PCD binary_compressed block is corrupt: {exc}") from None
    return raw, unpacked


def _decode_compressed(path: Path, header: PcdHeader, body: bytes) -> dict[str, np.ndarray]:
    raw, unpacked = _decompress(path, body)
    n = header.points
    layout = [
        (name, np.dtype(PCD_DTYPES[(kind, size)]), count)
        for name, size, kind, count in zip(header.names, header.sizes, header.types, header.counts)
        if name != PCD_PADDING
    ]
    need = n * sum(dt.itemsize * count for _, dt, count in layout)
    if len(raw) != need or unpacked != need:
        raise DatasetFormatError(
            path,
            f"PCD binary_compressed data must unpack to {need} bytes for POINTS={n}, "
            f"got {len(raw)} (header says {unpacked})",
        )
    out, offset = {}, 0
    for name, dt, count in layout:
        values = np.frombuffer(raw, dtype=dt, count=n * count, offset=offset)
        offset += values.nbytes
        values = values.astype(dt.newbyteorder("="))
        out[name] = values if count == 1 else values.reshape(n, count)
    return out


def parse_pcd(path: Path, raw: bytes) -> PcdData:
    """Decode the bytes of a PCD file (any of the three encodings).

    Args:
        path: The file the bytes came from (named in errors).
        raw: The whole file.

    Returns:
        The header and one array per non-padding field: (N,) for COUNT 1, (N, COUNT) otherwise,
        native byte order, dtype from TYPE/SIZE.

    Raises:
        DatasetFormatError: Malformed header, missing x/y/z, truncated or corrupt data.
    """
    header, offset = parse_header(path, raw)
    missing = [axis for axis in ("x", "y", "z") if axis not in header.names]
    if missing:
        raise DatasetFormatError(
            path, f"PCD has no x/y/z fields (fields: {' '.join(header.names)})"
        )
    if any(c != 1 for n, c in zip(header.names, header.counts) if n in ("x", "y", "z")):
        raise DatasetFormatError(path, f"PCD x/y/z must have COUNT 1, got COUNT {header.counts}")
    body = raw[offset:]
    if header.points == 0:
        fields = {
            n: np.zeros((0,) if c == 1 else (0, c), np.dtype(PCD_DTYPES[(t, s)]).newbyteorder("="))
            for n, s, t, c in zip(header.names, header.sizes, header.types, header.counts)
            if n != PCD_PADDING
        }
        return PcdData(header, fields)
    decoder = {
        "ascii": _decode_ascii,
        "binary": _decode_binary,
        "binary_compressed": _decode_compressed,
    }[header.encoding]
    return PcdData(header, decoder(path, header, body))


def _pcd_type(path_name: str, dtype: np.dtype) -> tuple[str, int, np.dtype]:
    """numpy dtype -> (PCD TYPE, SIZE, little-endian dtype); bool -> U1, float16 -> F4."""
    if dtype == np.bool_:
        return "U", 1, np.dtype("u1")
    if dtype.kind == "f":
        dtype = np.dtype("<f8") if dtype.itemsize == 8 else np.dtype("<f4")
        return "F", dtype.itemsize, dtype
    if dtype.kind in "iu":
        kind = "I" if dtype.kind == "i" else "U"
        return kind, dtype.itemsize, dtype.newbyteorder("<")
    raise ValueError(f"PCD field {path_name!r} must be numeric or bool, got dtype {dtype}")


def _format_for(kind: str, size: int, name: str) -> str:
    if kind != "F" or name in PCD_PACKED_RGB:
        return "%d"
    return "%.9g" if size == 4 else "%.17g"  # shortest formats that round-trip exactly


def _encode_ascii(header: PcdHeader, arrays: list[np.ndarray]) -> bytes:
    """One text line per point; packed rgb (TYPE F) written as its uint32 bits, like PCL."""
    if not header.points:
        return b""
    columns = [
        a.view(np.uint32) if name in PCD_PACKED_RGB and kind == "F" and a.itemsize == 4 else a
        for name, kind, a in zip(header.names, header.types, arrays)
    ]
    table = np.hstack(columns).astype(np.float64)
    fmt = [
        _format_for(kind, size, name)
        for name, kind, size, count in zip(header.names, header.types, header.sizes, header.counts)
        for _ in range(count)
    ]
    buffer = io.BytesIO()
    np.savetxt(buffer, table, fmt=fmt, delimiter=" ")
    return buffer.getvalue()


def encode_pcd(points, *, fields=None, encoding: str = "binary") -> bytes:
    """Encode a point cloud as a PCD v0.7 file (WIDTH N, HEIGHT 1, identity VIEWPOINT).

    Args:
        points: (N, 3) coordinates; float64 -> ``F 8``, anything else ``F 4``.
        fields: Extra name -> (N,) or (N, COUNT) arrays; dtype kept (bool -> U1, float16 -> F4).
        encoding: ``ascii``, ``binary`` or ``binary_compressed``.

    Returns:
        The file's bytes.
    """
    import lzf  # from python-neo-lzf, a pypcd4 dependency

    if encoding not in PCD_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(PCD_ENCODINGS)}, got {encoding!r}")
    points = np.asarray(points)
    points = points if points.dtype == np.float64 else points.astype(np.float32)
    n = points.shape[0]
    header = PcdHeader([], [], [], [], width=n, height=1, points=n, encoding=encoding)
    arrays = []
    for name, values in point_columns(points, fields, scalar_only=False).items():
        kind, size, dtype = _pcd_type(name, values.dtype)
        values = np.ascontiguousarray(values, dtype=dtype)
        values = values.reshape(n, 1) if values.ndim == 1 else values
        header.names.append(name)
        header.sizes.append(size)
        header.types.append(kind)
        header.counts.append(values.shape[1])
        arrays.append(values)
    text = header.text().encode("ascii")
    if encoding == "ascii":
        return text + _encode_ascii(header, arrays)
    if encoding == "binary":
        records = np.empty(
            n, dtype=[(k, a.dtype, (a.shape[1],)) for k, a in zip(header.names, arrays)]
        )
        for name, values in zip(header.names, arrays):
            records[name] = values
        return text + records.tobytes()
    raw = b"".join(a.tobytes() for a in arrays)  # field-major, (N, COUNT) per field
    packed = lzf.compress(raw, len(raw) + len(raw) // 16 + 64) if raw else b""
    return text + struct.pack("<II", len(packed), len(raw)) + packed
