"""Point metrics in reference style: the arithmetic of the published tables (REFERENCE.md §4).

PointAD's evaluation, which Align3D-AD reuses, differs from this project's ``foreground`` and
``grid`` variants in three ways, all reproduced here:

* the evaluation GT is the 2D GT mask resized to 336 x 336 with PIL *bilinear*, read as 8-bit
  values / 255 and thresholded at > 0.5 (:func:`reference_gt`), not nearest;
* every cell of the 336 x 336 grid counts, with whatever score the post-processing left there (with
  reference post-processing the blurred background stays non-zero);
* AUPRO is the cflow-ad ``cal_pro_score`` (:func:`cflow_aupro`): ``max_step`` = 200 linear
  thresholds ``arange(min, max, (max - min) / 200)`` over all maps of the category; at each the
  mean over all GT regions (8-connected, per sample) of the fraction of their cells scoring above
  it, and FPR = false positives / normal cells; only thresholds with FPR < 0.3 kept, those FPRs
  min-max rescaled to [0, 1], PRO integrated over them by the trapezoid rule (``sklearn auc``).

P-AUROC is ``roc_auc_score`` over all cells (organised) or over all points (unorganised clouds:
Real3D-AD's resampled points). AUPRO of unorganised clouds is NaN: the reference reports none.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ._inputs import ArrayLike, _as_samples, _binary, _matching_samples, _warn_undefined
from .metrics import PointMetrics, point_auroc
from .regions import global_region_ids, grid_regions

#: Thresholds of ``cal_pro_score`` (cflow-ad, PointAD ``metrics.py``).
REFERENCE_STEPS = 200
#: FPR limit of ``cal_pro_score`` (thresholds with FPR strictly below it are kept).
REFERENCE_MAX_FPR = 0.3
#: Side of the reference evaluation grid.
REFERENCE_SIZE = 336


def reference_gt(mask: np.ndarray, size: int = REFERENCE_SIZE) -> np.ndarray:
    """The reference evaluation GT: ``mask`` as an 8-bit image, PIL-bilinear resized, /255 > 0.5.

    Args:
        mask: (H, W) GT mask (bool, or 8-bit with 255 = anomalous as the PNGs hold it).
        size: Output side.

    Returns:
        bool (size, size).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
    image = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)
    resized = Image.fromarray(image, mode="L").resize((size, size), Image.BILINEAR)
    return (np.asarray(resized, dtype=np.float32) / np.float32(255.0)) > 0.5


def cflow_aupro(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    max_step: int = REFERENCE_STEPS,
    expect_fpr: float = REFERENCE_MAX_FPR,
) -> float:
    """AUPRO as cflow-ad's / PointAD's ``cal_pro_score`` computes it (module docstring).

    Vectorised: one sort of the normal scores and one of the region scores serve all thresholds.
    Thresholds and comparisons use the dtype of the scores, as the reference does.

    Args:
        labels: per-sample (H, W) GT masks (bool or 0/1).
        scores: per-sample (H, W) score maps, same shapes.
        max_step: Number of threshold steps.
        expect_fpr: FPR limit.

    Returns:
        The AUPRO in [0, 1]; NaN with an ``UndefinedMetricWarning`` where the reference's value is
        undefined (no region, no normal cell, constant scores, fewer than two thresholds below the
        FPR limit, or all kept FPRs equal).
    """
    ys = _as_samples(labels, "labels")
    ss = _matching_samples(scores, ys, "scores")
    for i, y in enumerate(ys):
        if y.ndim != 2:
            raise ValueError(f"labels[{i}] must be a 2-D (H, W) map, got shape {y.shape}")
    y = _binary(np.concatenate([a.reshape(-1) for a in ys]), "labels")
    dtype = np.result_type(*[a.dtype for a in ss])
    dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
    s = np.concatenate([a.reshape(-1) for a in ss]).astype(dtype)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite, got NaN or inf")
    ids, num = global_region_ids([grid_regions(np.asarray(a) != 0) for a in ys])
    if num == 0:
        _warn_undefined("cflow_aupro", "no anomalous region in any sample")
        return float("nan")
    if y.all():
        _warn_undefined("cflow_aupro", "no normal cell, so FPR is undefined")
        return float("nan")
    min_th, max_th = s.min(), s.max()
    delta = (max_th - min_th) / max_step
    if not delta > 0:
        _warn_undefined("cflow_aupro", "constant scores give no threshold")
        return float("nan")
    ths = np.arange(min_th, max_th, delta)
    normal = np.sort(s[~y])
    fpr = (normal.size - np.searchsorted(normal, ths, side="right")) / normal.size
    inside = ids > 0
    sizes = np.bincount(ids, minlength=num + 1).astype(np.float64)
    weight = 1.0 / (sizes[ids[inside]] * num)
    order = np.argsort(s[inside], kind="stable")
    ranked = s[inside][order]
    above = np.concatenate((np.cumsum(weight[order][::-1])[::-1], [0.0]))
    pro = above[np.searchsorted(ranked, ths, side="right")]
    keep = fpr < expect_fpr
    if keep.sum() < 2:
        _warn_undefined("cflow_aupro", f"fewer than 2 thresholds with FPR < {expect_fpr}")
        return float("nan")
    kept = fpr[keep]
    span = kept.max() - kept.min()
    if not span > 0:
        _warn_undefined("cflow_aupro", "every kept threshold has the same FPR")
        return float("nan")
    x, p = (kept - kept.min()) / span, pro[keep]
    return _sklearn_auc(x, p)


def _sklearn_auc(x: np.ndarray, y: np.ndarray) -> float:
    """``sklearn.metrics.auc``: trapezoids along a monotonic x, sign from its direction."""
    dx = np.diff(x)
    direction = -1.0 if (dx < 0).any() and (dx <= 0).all() else 1.0
    if (dx < 0).any() and direction > 0:
        raise ValueError("x must be monotonic")
    return float(direction * np.sum(dx * (y[1:] + y[:-1]) / 2.0))


def reference_point_metrics(labels: ArrayLike, scores: ArrayLike) -> PointMetrics:
    """P-AUROC over every element and cflow AUPRO over (H, W) maps (NaN for point vectors)."""
    ys = _as_samples(labels, "labels")
    p_auroc = point_auroc(ys, scores)
    grids = bool(ys) and all(a.ndim == 2 for a in ys)
    aupro = cflow_aupro(ys, scores) if grids else float("nan")
    return PointMetrics(p_auroc=p_auroc, aupro=aupro)


__all__ = [
    "REFERENCE_MAX_FPR",
    "REFERENCE_SIZE",
    "REFERENCE_STEPS",
    "cflow_aupro",
    "reference_gt",
    "reference_point_metrics",
]
