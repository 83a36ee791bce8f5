"""PLY export of scored point clouds: colours from a heat map of the score (or the sample's own),
plus ``anomaly_score`` and ``label`` per-point properties (readable by CloudCompare, MeshLab, Open3D).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.formats import write_ply
from ..data.sample import PointCloudSample
from ..errors import ShapeError
from .grid import DEFAULT_CMAP, heat_colors


def save_scored_ply(
    path: str | Path,
    sample: PointCloudSample,
    scores,
    *,
    labels=None,
    colors: str = "score",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = DEFAULT_CMAP,
    extra_fields: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``sample`` with per-point scores as a PLY file.

    Args:
        path: Target ``.ply``.
        sample: The cloud (its :meth:`~align3d_ad.data.PointCloudSample.coordinates`, as double
            when it has an origin; ``colors`` when ``colors="sample"``).
        scores: (N,) per-point anomaly scores (array or tensor).
        labels: (N,) bool ground truth; default ``sample.point_labels``; the ``label`` property is
            written when either is known.
        colors: ``"score"`` (heat colour map of the score) or ``"sample"`` (the sample's colours).
        vmin, vmax: Score range of the colour map (None = the scores' own range).
        cmap: Matplotlib colour map name.
        extra_fields: More (N,) per-point properties, e.g. ``{"anomalous": mask.astype(uint8)}``.

    Returns:
        ``path``.
    """
    n = sample.num_points
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().float().numpy()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape != (n,):
        raise ShapeError(f"scores must have shape ({n},), got {scores.shape}")
    labels = sample.point_labels if labels is None else labels
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if colors == "score":
        rgb = heat_colors(scores, vmin=vmin, vmax=vmax, cmap=cmap)
    elif colors == "sample":
        if sample.colors is None:
            raise ValueError(
                f"colors must be 'score' for sample {sample.sample_id!r}: it has no colours"
            )
        rgb = sample.colors
    else:
        raise ValueError(f"colors must be 'score' or 'sample', got {colors!r}")
    fields = {"anomaly_score": scores}
    if labels is not None:
        labels = np.asarray(labels).astype(bool)
        if labels.shape != (n,):
            raise ShapeError(f"labels must have shape ({n},), got {labels.shape}")
        fields["label"] = labels.astype(np.uint8)
    for name, values in (extra_fields or {}).items():
        if np.shape(values) != (n,):
            raise ShapeError(f"{name} must have shape ({n},), got {np.shape(values)}")
        fields[name] = np.asarray(values)
    # the file's own coordinates: float64 with the origin added back when the sample has one
    write_ply(path, sample.coordinates(), colors=np.clip(rgb, 0.0, 1.0), fields=fields)
    return Path(path)
