"""Post-processing in reference style (``method.postprocess: reference``, REFERENCE.md §1 and §3).

What the published numbers were computed from, step by step:

1. Eyecandies samples lose the background the reference's box drops (:func:`~align3d_ad.data.
   reference_background.reference_prepared`, instead of our plane cut); then the prepared sample
   is resampled as the reference does (:func:`~align3d_ad.data.reference.
   reference_resample`): organised scans nearest-resized to the S x S grid (S = ``eval.grid_size``,
   336), unorganised clouds to exactly S² points whose order is the reference's pseudo-grid.
2. Per view, the 2-class patch maps are upsampled bilinearly to the image size (align_corners
   false) and read at the point's *integer* (truncated) pixel; a point's value is the mean over the
   views that see it. A point seen in no view copies the visibility of the nearest seen point in
   index order (the reference's rule).
3. Each branch's anomalous channel is put on the S x S grid (background cells 0) and blurred with
   a Gaussian of ``method.grid_sigma`` (4) grid pixels over the *whole* grid, background included.
4. Point map β A^C + (1 - β) A^R of the blurred grids (the ``reference`` metric variant reads it,
   background cells included); object score max(α A^C + (1 - α) A^R) over the blurred grid plus
   α p^C + (1 - α) p^R (METHOD.md §6 on the reference maps; one branch: its map's max + its p).

Our defaults differ on purpose (METHOD.md §2 and §6): native resolution, bilinear reading, every
point of a visible surface counted, hidden points filled from 3D neighbours, 3D smoothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from ..backbone.encode import stack_features
from ..data.prepare import PreparedSample
from ..data.reference import reference_resample
from ..data.reference_background import reference_prepared
from ..errors import ShapeError
from ..render import Rendering, smooth_grid_scores
from .head import fuse_branches


def lift_resampled(scores: np.ndarray, rows: np.ndarray, prepared: PreparedSample) -> np.ndarray:
    """Scores of the resampled points -> scores of the prepared sample's points.

    A prepared point that was resampled takes its (first) resampled copy's score; the others the
    score of the resampled point nearest to it in 3D.
    """
    n = prepared.sample.num_points
    first = np.full(n, -1, dtype=np.int64)
    order = np.arange(len(rows))[::-1]
    first[rows[order]] = order  # the last write is the first occurrence
    missing = np.flatnonzero(first < 0)
    if missing.size:
        kept = np.flatnonzero(first >= 0)
        _, nearest = cKDTree(prepared.sample.points[kept]).query(prepared.sample.points[missing])
        first[missing] = first[kept[nearest]]
    return np.asarray(scores)[first]


def _seen_rows(visible: torch.Tensor) -> torch.Tensor:
    """(N, V) visibility with unseen rows copying the nearest seen row in index order."""
    seen = visible.any(dim=1)
    if bool(seen.all()) or not bool(seen.any()):
        return visible
    idx = torch.arange(len(seen), device=visible.device)
    seen_idx = idx[seen]
    pos = torch.searchsorted(seen_idx, idx).clamp(max=len(seen_idx) - 1)
    prev = seen_idx[(pos - 1).clamp(min=0)]
    nxt = seen_idx[pos]
    nearest = torch.where((idx - prev).abs() <= (nxt - idx).abs(), prev, nxt)
    return visible[nearest]


def nearest_point_maps(patch_probs: torch.Tensor, rendering: Rendering) -> list[torch.Tensor]:
    """Per-point (N_i, C) values: maps upsampled bilinearly, read at the truncated pixel, view mean."""
    b, v, c, g_h, g_w = patch_probs.shape
    size = rendering.image_size
    up = F.interpolate(patch_probs.reshape(b * v, c, g_h, g_w).float(), size=(size, size),
                       mode="bilinear", align_corners=False)  # fmt: skip
    plane = up.permute(0, 2, 3, 1).reshape(-1, c)  # (B * V * S * S, C)
    ij = rendering.pixel_coords.to(torch.int64).clamp_(0, size - 1)  # truncation, then clip
    out = []
    for i in range(rendering.num_samples):
        sl = rendering.sample_slice(i)
        vis = _seen_rows(rendering.visible[sl]).to(plane.device)
        views = torch.arange(v, device=plane.device)
        flat = ((i * v + views) * size + ij[sl, :, 1].to(plane.device)) * size + ij[sl, :, 0].to(
            plane.device
        )
        values = plane[flat]  # (N, V, C)
        share = vis.to(values.dtype) / vis.sum(dim=1, keepdim=True).clamp_min(1).to(values.dtype)
        out.append((values * share.unsqueeze(-1)).sum(dim=1))
    return out


def grid_maps(scores: torch.Tensor, cells: np.ndarray, size: int, sigma: float) -> torch.Tensor:
    """(C, S, S) blurred maps of (N, C) point scores placed at ``cells`` (background 0)."""
    if len(cells) != scores.shape[0]:
        raise ShapeError(f"cells must have one entry per point ({scores.shape[0]}), got {len(cells)}")
    grid = scores.new_zeros(size * size, scores.shape[1])
    grid[torch.from_numpy(np.asarray(cells)).to(scores.device)] = scores
    return smooth_grid_scores(grid.T.reshape(-1, size, size), sigma=sigma)


def cells_of(sample, size: int) -> np.ndarray:
    """Cells of the S x S grid of a resampled sample (organised) or its pseudo-grid (index order)."""
    if sample.is_organised:
        if tuple(sample.grid_shape) != (size, size):
            raise ShapeError(f"grid must be {size} x {size}, got {sample.grid_shape}")
        return sample.grid_index
    if sample.num_points != size * size:
        raise ShapeError(f"cloud must hold {size * size} points, got {sample.num_points}")
    return np.arange(size * size)



def _lift(grid: torch.Tensor, index: torch.Tensor, rows: np.ndarray, prep: PreparedSample):
    """Values of an S x S grid at the resampled points, lifted to the prepared points."""
    values = grid.reshape(-1)[index].float().cpu().numpy()
    return torch.from_numpy(lift_resampled(values, rows, prep))


@torch.no_grad()
def predict_reference(detector, prepared: list[PreparedSample]) -> list:
    """:meth:`Detector.predict_prepared` with reference post-processing (module docstring)."""
    config = detector.config
    size, sigma = config.eval.grid_size, config.method.grid_sigma
    prepared = [reference_prepared(p, size) for p in prepared]  # Eyecandies: the reference's box
    resampled = [reference_resample(p.sample, size, seed=config.seed) for p in prepared]
    samples = [s for s, _ in resampled]
    rendering = detector.encoder.render(samples)
    feats = detector.encoder.encode(samples, rendering=rendering)
    global_, tokens = stack_features(feats, detector.encoder.device)
    outs = detector.head(global_, tokens, grid=detector.encoder.grid_size, texts=detector._texts)
    maps = {b: nearest_point_maps(o.patch_probs, rendering) for b, o in outs.items()}
    global_p = {b: o.global_logits.softmax(-1)[..., 1].mean(1) for b, o in outs.items()}
    results = []
    for i, (prep, (sample, rows)) in enumerate(zip(prepared, resampled)):
        cells = cells_of(sample, size)
        stacked = torch.stack([maps[b][i][:, 1] for b in maps], dim=1)
        blurred = grid_maps(stacked, cells, size, sigma)
        grids = {b: blurred[k] for k, b in enumerate(maps)}
        glob = {b: p[i] for b, p in global_p.items()}
        point_grid, obj = fuse_branches(grids, glob, alpha=config.method.alpha,
                                         beta=config.method.beta)  # fmt: skip
        index = torch.from_numpy(cells).to(point_grid.device)

        lifted = {b: _lift(g, index, rows, prep) for b, g in grids.items()}
        pred = detector._prediction(prep, _lift(point_grid, index, rows, prep), obj, lifted, glob)
        flat = point_grid.reshape(-1)[index].float().cpu().numpy()
        pred.reference = ((point_grid.float().cpu().numpy(), None) if sample.is_organised
                          else (flat, sample.point_labels))  # fmt: skip
        results.append(pred)
    return results


__all__ = [
    "cells_of",
    "grid_maps",
    "lift_resampled",
    "nearest_point_maps",
    "predict_reference",
]
