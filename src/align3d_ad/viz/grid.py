"""PNG grids of rendered views with heat-map overlays and ground-truth outlines.

Layout (exact, so callers and tests can rely on it): V tiles of S x S pixels in ``columns`` columns
(default ``ceil(sqrt(V))``) and ``ceil(V / columns)`` rows, ``GAP`` white pixels between tiles and
none around the grid; with titles, a ``TITLE_HEIGHT`` strip above every tile. Image size:
``width = columns * S + (columns - 1) * GAP`` and
``height = rows * (S + title) + (rows - 1) * GAP``. Written with Pillow, atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw

from .._atomic import atomic_path
from .._checks import check_shape

#: White gap between tiles, pixels.
GAP = 2
#: Height of the title strip above each tile, pixels (Pillow's default bitmap font is ~11 px).
TITLE_HEIGHT = 14
#: Opacity of the heat overlay.
HEAT_ALPHA = 0.5
#: Colour of ground-truth mask outlines (magenta: distinct from grey renderings and the jet map).
MASK_COLOR = (1.0, 0.0, 1.0)
#: Default colour map of scores.
DEFAULT_CMAP = "jet"


def _numpy(x) -> np.ndarray:
    """Tensor or array -> float/bool numpy array on the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def heat_colors(
    values: np.ndarray,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> np.ndarray:
    """Map values (...) to RGB (..., 3) in [0, 1] with a colour map; range from the finite values."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    norm = (np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-12)
    return matplotlib.colormaps[cmap](np.clip(norm, 0.0, 1.0))[..., :3]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of (V, S, S) ``mask`` with a 4-neighbour outside the mask (its boundary)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    inner = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    return mask & ~inner


def compose_views(
    images,
    *,
    heat=None,
    mask=None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = HEAT_ALPHA,
) -> np.ndarray:
    """Overlay heat (NaN = none) and mask outlines on (V, 3, S, S) images; return (V, S, S, 3)."""
    rgb = np.clip(_numpy(images).astype(np.float64), 0.0, 1.0).transpose(0, 2, 3, 1)
    v, s = rgb.shape[0], rgb.shape[1]
    if heat is not None:
        heat = _numpy(heat).astype(np.float64)
        check_shape(heat, f"{v} {s} {s}", name="heat")
        colors = heat_colors(heat, vmin=vmin, vmax=vmax, cmap=cmap)
        has = np.isfinite(heat)[..., None]
        rgb = np.where(has, (1 - alpha) * rgb + alpha * colors, rgb)
    if mask is not None:
        mask = _numpy(mask).astype(bool)
        check_shape(mask, f"{v} {s} {s}", name="mask")
        rgb = np.where(_outline(mask)[..., None], np.array(MASK_COLOR), rgb)
    return rgb


def save_view_grid(
    path: str | Path,
    images,
    *,
    heat=None,
    mask=None,
    titles: Sequence[str] | None = None,
    columns: int | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> Path:
    """Write a PNG grid of V views.

    Args:
        path: Target ``.png``.
        images: (V, 3, S, S) images in [0, 1] (tensor or array).
        heat: (V, S, S) values to overlay with ``cmap`` (NaN = no overlay), or None.
        mask: (V, S, S) bool ground truth drawn as outlines, or None.
        titles: One title per view, or None for no title strips.
        columns: Tiles per row; default ``ceil(sqrt(V))``.
        vmin, vmax: Heat range; default the finite range of ``heat``.
        cmap: Matplotlib colour map name.

    Returns:
        ``path``.
    """
    dims = check_shape(images, "V 3 S S", name="images")
    v, s = dims["V"], dims["S"]
    tiles = compose_views(images, heat=heat, mask=mask, vmin=vmin, vmax=vmax, cmap=cmap)
    if titles is not None and len(titles) != v:
        raise ValueError(f"titles must have one entry per view ({v}), got {len(titles)}")
    columns = columns or math.ceil(math.sqrt(v))
    rows = math.ceil(v / columns)
    title_h = TITLE_HEIGHT if titles is not None else 0
    width = columns * s + (columns - 1) * GAP
    height = rows * (s + title_h) + (rows - 1) * GAP
    canvas = np.ones((height, width, 3))
    for i in range(v):
        top = (i // columns) * (s + title_h + GAP) + title_h
        left = (i % columns) * (s + GAP)
        canvas[top : top + s, left : left + s] = tiles[i]
    image = Image.fromarray(np.round(canvas * 255).astype(np.uint8))
    if titles is not None:
        draw = ImageDraw.Draw(image)
        for i, title in enumerate(titles):
            top = (i // columns) * (s + title_h + GAP)
            draw.text(((i % columns) * (s + GAP) + 2, top + 1), str(title), fill=(0, 0, 0))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
