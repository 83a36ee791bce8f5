"""PLY (Stanford polygon format) codec, plus the per-point field conventions shared with PCD.

Format reference: Greg Turk, "The PLY Polygon File Format" (1994), as written by MeshLab, Open3D
and PCL. Formats ``ascii 1.0``, ``binary_little_endian 1.0`` and ``binary_big_endian 1.0`` are
read. Only the ``vertex`` element is decoded; elements after it (faces, edges) are ignored. An
element before ``vertex`` is skipped when its size is known: in ascii always (one line per item),
in binary only when it has no list properties (a list makes the size data-dependent).

Field conventions (used for PLY and PCD): colours come from ``red/green/blue`` (or ``r/g/b``,
``diffuse_*``, or PCL's packed ``rgb``/``rgba``) and are scaled to [0, 1]; a scalar ``label``
field marks anomalous points where it is > 0.5.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_shape
from ..errors import DatasetFormatError

#: PLY property type names (both spellings of the spec) -> numpy kind/size without byte order.
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip
#: ``format`` line value -> byte-order character (None for ascii).
PLY_FORMATS: dict[str, str | None] = {
    "ascii": None,
    "binary_little_endian": "<",
    "binary_big_endian": ">",
}
#: numpy dtype -> PLY type name used when writing.
_WRITE_TYPES: dict[str, str] = {
    "i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
    "i4": "int", "u4": "uint", "f4": "float", "f8": "double",
}  # fmt: skip
_END_HEADER = b"end_header"
#: Field-name triples read as colours, in order of preference (PLY/PCD writers' spellings).
COLOR_FIELDS = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)
#: Packed 0x00RRGGBB colour fields (PCL convention).
PACKED_COLOR_FIELDS = ("rgb", "rgba")
#: Per-point values above this mark an anomalous point (labels may be stored as 0/1 floats).
LABEL_THRESHOLD = 0.5


@dataclass
class PlyElement:
    """One ``element`` of a PLY header: name, item count, scalar properties, list flag."""

    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, numpy kind/size such as "f4")
    has_list: bool = False


def _data_offset(path: Path, raw: bytes) -> int:
    end = raw.find(_END_HEADER)
    if not raw.startswith(b"ply") or end < 0:
        raise DatasetFormatError(
            path, "PLY must start with 'ply' and have an 'end_header' line; this is not a PLY file"
        )
    newline = raw.find(b"\n", end)
    return len(raw) if newline < 0 else newline + 1


def parse_header(path: Path, raw: bytes) -> tuple[str, list[PlyElement], int]:
    """Parse a PLY header; return the format, the elements in file order and the body offset."""
    offset = _data_offset(path, raw)
    lines = raw[:offset].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []
    for number, line in enumerate(lines[1:-1], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append(PlyElement(words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1].has_list = True
                elements[-1].properties.append((words[4], "list"))
            elif words[0] == "property":
                elements[-1].properties.append((words[2], PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"unknown keyword {words[0]!r}")
        except (IndexError, KeyError, ValueError) as exc:
            raise DatasetFormatError(
                path, f"PLY header line {number} {line.strip()!r} is malformed ({exc!r})"
            ) from None
    if fmt not in PLY_FORMATS:
        raise DatasetFormatError(
            path, f"PLY format must be one of {', '.join(PLY_FORMATS)}, got {fmt!r}"
        )
    return fmt, elements, offset


def _vertex_layout(path: Path, elements: list[PlyElement]) -> tuple[PlyElement, list[PlyElement]]:
    """Find the vertex element and the elements stored before it."""
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise DatasetFormatError(path, f"PLY must have a 'vertex' element, got {names}")
    index = names.index("vertex")
    vertex = elements[index]
    if vertex.has_list:
        raise DatasetFormatError(path, "PLY vertex properties must be scalars, got a list property")
    props = [p for p, _ in vertex.properties]
    if len(set(props)) != len(props):
        raise DatasetFormatError(path, f"PLY vertex property names must be unique, got {props}")
    return vertex, elements[:index]


def _read_binary(path: Path, body: bytes, order: str, vertex: PlyElement, before) -> dict:
    skip = 0
    for element in before:
        if element.has_list:
            raise DatasetFormatError(
                path,
                f"PLY binary element {element.name!r} before 'vertex' has a list property; "
                "its size is unknown, so the vertices cannot be located",
            )
        skip += element.count * sum(np.dtype(k).itemsize for _, k in element.properties)
    dtype = np.dtype([(p, order + k) for p, k in vertex.properties])
    need = skip + vertex.count * dtype.itemsize
    if len(body) < need:
        raise DatasetFormatError(
            path,
            f"PLY binary data must hold {vertex.count} vertices x {dtype.itemsize} bytes "
            f"(+{skip} bytes before them), got {len(body)} bytes (file truncated)",
        )
    records = np.frombuffer(body, dtype=dtype, count=vertex.count, offset=skip)
    return {p: records[p].astype(np.dtype(k)) for p, k in vertex.properties}


def _read_ascii(path: Path, body: bytes, vertex: PlyElement, before) -> dict:
    skip = sum(element.count for element in before)
    width = len(vertex.properties)
    try:
        table = np.loadtxt(
            io.BytesIO(body), dtype=np.float64, ndmin=2, skiprows=skip, max_rows=vertex.count
        )
    except ValueError as exc:
        raise DatasetFormatError(path, f"PLY ascii vertices must be numbers: {exc}") from None
    if table.shape[0] < vertex.count:
        raise DatasetFormatError(
            path,
            f"PLY ascii data must have {vertex.count} vertex lines, got {table.shape[0]} "
            "(file truncated)",
        )
    if table.shape[1] != width:
        raise DatasetFormatError(
            path, f"PLY ascii vertex lines must have {width} values, got {table.shape[1]}"
        )
    return {p: table[:, i].astype(k) for i, (p, k) in enumerate(vertex.properties)}


def normalise_colors(path: Path, colors: np.ndarray) -> np.ndarray:
    """(..., 3) colours -> float32 in [0, 1]: uint16 / 65535, other ints or values > 1 / 255."""
    colors = np.asarray(colors)
    if colors.dtype.kind not in "biuf":
        raise DatasetFormatError(path, f"colours must be numeric, got dtype {colors.dtype}")
    scale = 1.0
    if colors.dtype == np.uint16:
        scale = 65535.0
    elif colors.dtype.kind in "iu" or (colors.size and np.nanmax(colors) > 1.0):
        scale = 255.0
    out = colors.astype(np.float32) / np.float32(scale)
    if out.size and (np.nanmin(out) < 0.0 or np.nanmax(out) > 1.0):
        raise DatasetFormatError(
            path, f"colours must lie in [0, 1] or [0, 255], got [{colors.min()}, {colors.max()}]"
        )
    return out


def split_fields(
    path: Path, fields: dict[str, np.ndarray]
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, np.ndarray]]:
    """Pull colours and the point label out of a field dict; return (colors, labels, rest)."""
    rest = {k: v for k, v in fields.items() if k not in ("x", "y", "z")}
    colors = None
    for triple in COLOR_FIELDS:
        if all(name in rest for name in triple):
            parts = [rest.pop(name) for name in triple]
            colors = normalise_colors(path, np.stack(parts, axis=1))
            break
    else:
        for name in PACKED_COLOR_FIELDS:
            if name in rest and rest[name].ndim == 1 and rest[name].dtype.itemsize == 4:
                packed = rest.pop(name).view(np.uint32)
                shifts = np.array([16, 8, 0], dtype=np.uint32)
                colors = ((packed[:, None] >> shifts) & 0xFF).astype(np.float32) / 255.0
                break
    labels = None
    if "label" in rest and rest["label"].ndim == 1:
        labels = rest.pop("label") > LABEL_THRESHOLD
    return colors, labels, rest


def point_columns(points: np.ndarray, fields: dict | None, *, scalar_only: bool) -> dict:
    """Validate (N, 3) points and extra (N,) / (N, C) fields; return name -> array in order."""
    points = np.asarray(points)
    n = check_shape(points, "N 3", name="points")["N"]
    columns = {axis: points[:, i] for i, axis in enumerate("xyz")}
    for name, values in (fields or {}).items():
        values = np.asarray(values)
        if not name or any(c.isspace() for c in name) or name in columns or name == "_":
            raise ValueError(
                f"field name must be a new non-empty word without spaces, got {name!r}"
            )
        check_shape(values, f"{n}" if scalar_only or values.ndim == 1 else f"{n} *", name=name)
        if values.dtype.kind not in "biuf":
            raise ValueError(f"field {name!r} must be numeric or bool, got dtype {values.dtype}")
        columns[name] = values
    return columns


def parse_ply(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    """Decode the vertex properties of a PLY file.

    Args:
        path: The file the bytes came from (named in errors).
        raw: The whole file.

    Returns:
        Vertex property name -> (N,) array in the file's type (native byte order), in file order.

    Raises:
        DatasetFormatError: Malformed header, no vertex element or no x/y/z, truncated data.
    """
    fmt, elements, offset = parse_header(path, raw)
    vertex, before = _vertex_layout(path, elements)
    props = [p for p, _ in vertex.properties]
    if not {"x", "y", "z"} <= set(props):
        raise DatasetFormatError(path, f"PLY has no x/y/z vertex properties (properties: {props})")
    body = raw[offset:]
    if vertex.count == 0:
        return {p: np.zeros(0, dtype=k) for p, k in vertex.properties}
    order = PLY_FORMATS[fmt]
    if order is None:
        return _read_ascii(path, body, vertex, before)
    return _read_binary(path, body, order, vertex, before)


def _ply_type(values: np.ndarray) -> np.ndarray:
    """Cast to a dtype PLY can store: bool -> uint8, ints <= 32 bit kept, the rest float32."""
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 4:
        return values
    return values.astype(np.float32)


def encode_ply(points, *, colors=None, fields=None, binary: bool = True) -> bytes:
    """Encode a point cloud as a PLY file with one ``vertex`` element.

    Args:
        points: (N, 3) coordinates, written as ``float x y z`` (``double`` when float64).
        colors: (N, 3) uint8, or float in [0, 1] (rounded to 0..255); ``uchar red green blue``.
        fields: Extra name -> (N,) arrays; bool -> ``uchar``, ints <= 32 bit kept, others ``float``.
        binary: ``binary_little_endian`` when True, else ``ascii``.

    Returns:
        The file's bytes.
    """
    columns = point_columns(points, fields, scalar_only=True)
    n = columns["x"].shape[0]
    for name, values in columns.items():
        if name in ("x", "y", "z"):
            columns[name] = values if values.dtype == np.float64 else values.astype(np.float32)
        else:
            columns[name] = _ply_type(values)
    if colors is not None:
        colors = np.asarray(colors)
        check_shape(colors, f"{n} 3", name="colors")
        if colors.dtype != np.uint8:
            if colors.size and (np.nanmin(colors) < 0 or np.nanmax(colors) > 1):
                raise ValueError("colors must be uint8 or float in [0, 1]")
            colors = np.rint(np.nan_to_num(colors) * 255.0).astype(np.uint8)
        clash = {"red", "green", "blue"} & set(columns)
        if clash:
            raise ValueError(f"field names {sorted(clash)} clash with the colour properties")
        rgb = dict(zip(("red", "green", "blue"), colors.T))
        columns = {**{k: columns[k] for k in "xyz"}, **rgb, **columns}
    kinds = {name: np.dtype(a.dtype).str[1:] for name, a in columns.items()}
    lines = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment written by align3d-ad",
        f"element vertex {n}",
        *(f"property {_WRITE_TYPES[k]} {name}" for name, k in kinds.items()),
        "end_header",
        "",
    ]
    header = "\n".join(lines).encode("ascii")
    if binary:
        records = np.empty(n, dtype=[(name, "<" + k) for name, k in kinds.items()])
        for name, values in columns.items():
            records[name] = values
        return header + records.tobytes()
    fmt = [{"f4": "%.9g", "f8": "%.17g"}.get(k, "%d") for k in kinds.values()]
    table = np.column_stack([a.astype(np.float64) for a in columns.values()])
    buffer = io.BytesIO()
    np.savetxt(buffer, table.reshape(n, len(columns)), fmt=fmt, delimiter=" ")
    return header + buffer.getvalue()
