"""File writers shared by the format modules: PNG and text (deterministic bytes).

Sample files are written directly into folders the caller created (the generator marks its output as
incomplete in ``synth_manifest.json`` until it finishes, so per-file atomic renames are not needed and
would double the file-system work); the manifest itself is written atomically. xyz TIFFs and PCDs go
through :mod:`align3d_ad.data.formats` (``write_tiff_xyz``, ``write_pcd``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .._atomic import atomic_write_text

PNG_COMPRESS_LEVEL = 1  # zlib level: fast; the bytes stay deterministic for a given input


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an 8-bit RGB (H, W, 3), 8-bit gray (H, W) or 16-bit gray (H, W) uint16 PNG."""
    image = np.ascontiguousarray(image)
    if image.dtype not in (np.uint8, np.uint16) or (image.dtype == np.uint16 and image.ndim != 2):
        raise ValueError(
            f"PNG image must be uint8 (H, W[, 3]) or uint16 (H, W), got {image.dtype} {image.shape}"
        )
    Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def write_json(path: Path, data: object, *, atomic: bool = False, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON, keys sorted unless asked not to (atomically when asked)."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    if atomic:
        atomic_write_text(path, text)
    else:
        Path(path).write_text(text, encoding="utf-8")


def write_yaml(path: Path, data: object) -> None:
    """Write ``data`` as block-style YAML (keys sorted)."""
    text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
    Path(path).write_text(text, encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text."""
    Path(path).write_text(text, encoding="utf-8")


def format_rows(table: np.ndarray, row_format: str) -> str:
    """Text of a 2D table, one ``row_format`` line per row (one C-level ``%`` over all values)."""
    table = np.asarray(table, dtype=np.float64)
    if table.size == 0:
        return ""
    return (row_format * len(table)) % tuple(table.ravel().tolist())


def write_matrix(path: Path, matrix: np.ndarray, row_format: str) -> None:
    """Write a 2D array as whitespace-separated text (``np.loadtxt`` reads it back)."""
    write_text(path, format_rows(matrix, row_format))


def make_folders(*folders: Path) -> None:
    """Create ``folders`` (and parents) if missing."""
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
