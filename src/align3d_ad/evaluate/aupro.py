"""AUPRO and the PRO curve (per-region overlap, Bergmann et al., MVTec AD, IJCV 2021).

Each connected anomalous region counts equally. PRO(t) is the mean over all regions of the
fraction of their elements scoring strictly above t; FPR(t) the fraction of normal elements
scoring above t. The PRO-vs-FPR curve is integrated up to ``max_fpr`` (trapezoids, the last one cut
at ``max_fpr`` with a linearly interpolated PRO) and divided by ``max_fpr``. Two ways to sample the
curve:

* ``"exact"`` (default): every distinct score is a threshold (one sort, cumulative sums). Tied
  scores move FPR and PRO together along a straight segment, the expected curve under random
  tie-breaking; constant scores therefore give the diagonal PRO = FPR and AUPRO = max_fpr / 2
  (0.15 at the default 0.3), the same as uniformly random scores, just as AUROC gives 0.5. This is
  the curve of the cumulative-sum ``compute_pro`` in MVTec's AD evaluation code.
* ``"official"``: the 100-threshold procedure of the MVTec 3D-AD ``au_pro_util.py`` (also BTF, M3DM,
  CPMF, Shape-Guided) that published 3D numbers use: thresholds at integer-truncated, equally
  spaced ranks of the pooled sorted normal scores, FPR = 1 - (rank+1)/N_neg (approximate under
  ties), point (1, 1) prepended. Its PRO drops to 0 for constant scores, so AUPRO = 0 there.

Inputs are per sample, as described in :mod:`._inputs`; :func:`~.metrics.point_metrics` computes
P-AUROC and AUPRO together from the same pooled inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._inputs import (
    ArrayLike,
    _as_samples,
    _binary,
    _finite,
    _flat_concat,
    _matching_samples,
    _warn_undefined,
)
from .regions import global_region_ids, grid_regions

DEFAULT_MAX_FPR = 0.3
"""AUPRO integration limit of the MVTec AD / MVTec 3D-AD evaluation scripts."""

DEFAULT_NUM_THRESHOLDS = 100
"""Thresholds of the official MVTec 3D-AD / BTF / M3DM ``compute_pro`` (``method="official"``)."""

AUPRO_METHODS = ("exact", "official")


@dataclass(frozen=True)
class ProCurve:
    """A PRO curve: FPR and PRO at each threshold, ordered by increasing FPR (K points).

    Attributes:
        fpr: (K,) float64 false-positive rates, non-decreasing, from 0 to 1.
        pro: (K,) float64 per-region overlaps, non-decreasing, ending at 1.
    """

    fpr: np.ndarray
    pro: np.ndarray


@dataclass(frozen=True)
class _Pooled:
    """Point-level inputs of all samples, flattened and concatenated (n elements)."""

    scores: np.ndarray  # (n,) floating
    labels: np.ndarray  # (n,) bool
    pro_weight: np.ndarray | None  # (n,) float64, 1/(R*|region|) inside regions, else 0
    num_regions: int


def aupro(
    labels: ArrayLike,
    scores: ArrayLike,
    regions: ArrayLike | None = None,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    method: Literal["exact", "official"] = "exact",
    num_thresholds: int = DEFAULT_NUM_THRESHOLDS,
) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr``.

    Args:
        labels: per-sample labels (list of (N,) or (H, W) arrays, bool or 0/1); 0 = normal.
        scores: per-sample real scores, same shapes as ``labels``.
        regions: per-sample int region maps, same shapes: 0 = no region, k > 0 = region id
            (unique within a sample; made unique across samples here). Region elements must be
            labelled anomalous; anomalous elements outside every region are ignored. None
            computes 8-connected :func:`grid_regions` of each (H, W) label grid.
        max_fpr: Integration limit in (0, 1].
        method: ``"exact"`` (all distinct thresholds) or ``"official"`` (MVTec 3D-AD
            ``au_pro_util.py``); see the module docstring.
        num_thresholds: Thresholds of ``method="official"`` (ignored by ``"exact"``).

    Returns:
        AUPRO in [0, 1]; NaN with an :class:`UndefinedMetricWarning` if there is no region or no
        normal element.

    Raises:
        ValueError: mismatched shapes, non-binary labels, non-finite scores, negative or
            non-integer regions, a region on a normal element, or an invalid option.
    """
    curve = pro_curve(labels, scores, regions, method=method, num_thresholds=num_thresholds)
    return float("nan") if curve is None else _area_to(curve.fpr, curve.pro, _check_fpr(max_fpr))


def pro_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    regions: ArrayLike | None = None,
    *,
    method: Literal["exact", "official"] = "exact",
    num_thresholds: int = DEFAULT_NUM_THRESHOLDS,
) -> ProCurve | None:
    """The PRO curve whose area :func:`aupro` reports (same arguments).

    Returns:
        The curve, or None with an :class:`UndefinedMetricWarning` when it is undefined.
    """
    _check_method(method, num_thresholds)
    pooled = _pool(labels, scores, regions, need_regions=True)
    if not _pro_defined(pooled):
        return None
    if method == "exact":
        return _exact_curve(pooled)
    return _official_curve(pooled, num_thresholds)


# ------------------------------------------------------------------------------------ curves


def _ranked_cumsums(scores: np.ndarray, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cumulative sums of ``weights`` over elements with score >= each distinct score.

    Sorts once (descending) and keeps the last element of each run of equal scores, so a
    threshold always falls between distinct values. Each output starts with 0 (nothing selected).
    """
    order = np.argsort(scores)[::-1]
    ranked = scores[order]
    keep = np.ones(ranked.size, dtype=bool)
    keep[:-1] = ranked[1:] != ranked[:-1]
    return [np.concatenate(([0.0], np.cumsum(w[order])[keep])) for w in weights]


def _exact_curve(pooled: _Pooled) -> ProCurve:
    neg = ~pooled.labels
    fp, tp = _ranked_cumsums(pooled.scores, [neg.astype(np.int64), pooled.pro_weight])
    return ProCurve(fpr=fp / fp[-1], pro=np.minimum(tp, 1.0))


def _official_curve(pooled: _Pooled, num_thresholds: int) -> ProCurve:
    neg_sorted = np.sort(pooled.scores[~pooled.labels])
    n_neg = neg_sorted.size
    positions = np.linspace(0, n_neg - 1, num=num_thresholds, dtype=int)
    thresholds = neg_sorted[positions]
    fpr = 1.0 - (positions + 1) / n_neg
    inside = pooled.pro_weight > 0
    reg_scores, reg_weight = pooled.scores[inside], pooled.pro_weight[inside]
    order = np.argsort(reg_scores)
    above = np.concatenate((np.cumsum(reg_weight[order][::-1])[::-1], [0.0]))
    pro = np.minimum(above[np.searchsorted(reg_scores[order], thresholds, side="right")], 1.0)
    return ProCurve(fpr=np.append(fpr[::-1], 1.0), pro=np.append(pro[::-1], 1.0))


def _area_to(fpr: np.ndarray, pro: np.ndarray, max_fpr: float) -> float:
    """Trapezoidal area under (fpr, pro) up to ``max_fpr``, divided by ``max_fpr``.

    Same rule as ``trapezoid(x, y, x_max)`` of the MVTec evaluation code: points with
    fpr <= max_fpr, plus, when max_fpr is not a sample point, the trapezoid from the last of them
    to max_fpr with PRO linearly interpolated on the segment that crosses it.
    """
    ins = int(np.searchsorted(fpr, max_fpr, side="right"))
    area = _trapezoid(fpr[:ins], pro[:ins])
    if fpr[ins - 1] != max_fpr:
        x0, x1, y0, y1 = fpr[ins - 1], fpr[ins], pro[ins - 1], pro[ins]
        y_at = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_at) * (max_fpr - x0)
    return float(area / max_fpr)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def _pro_defined(pooled: _Pooled) -> bool:
    if pooled.num_regions == 0:
        _warn_undefined("aupro", "no anomalous region in any sample")
        return False
    if pooled.labels.all():
        _warn_undefined("aupro", "no normal element, so FPR is undefined")
        return False
    return True


# ---------------------------------------------------------------------------------- inputs


def _pool(
    labels: ArrayLike, scores: ArrayLike, regions: ArrayLike | None, *, need_regions: bool
) -> _Pooled:
    """Validate per-sample inputs and concatenate them; regions get global ids and weights."""
    ys = _as_samples(labels, "labels")
    ss = _matching_samples(scores, ys, "scores")
    y = _binary(_flat_concat(ys), "labels")
    s = _finite(_flat_concat(ss), "scores")
    if not need_regions:
        return _Pooled(scores=s, labels=y, pro_weight=None, num_regions=0)
    if regions is None:
        for i, a in enumerate(ys):
            if a.ndim != 2:
                raise ValueError(
                    f"regions must be given for labels[{i}] of shape {a.shape}; "
                    "use point_regions for point vectors (None works for (H, W) grids)"
                )
        rs = [grid_regions(a) for a in ys]
    else:
        rs = _matching_samples(regions, ys, "regions")
    ids, num = global_region_ids(rs)
    if (ids[~y] > 0).any():
        raise ValueError(
            f"regions must lie on anomalous labels, got {int((ids[~y] > 0).sum())} "
            "region elements labelled normal"
        )
    sizes = np.bincount(ids, minlength=num + 1).astype(np.float64)
    sizes[0] = np.inf  # weight 0 outside every region
    weight = 1.0 / (sizes[ids] * max(num, 1))
    return _Pooled(scores=s, labels=y, pro_weight=weight, num_regions=num)


def _check_fpr(max_fpr: float) -> float:
    if isinstance(max_fpr, bool) or not (
        isinstance(max_fpr, (int, float, np.floating)) and 0 < max_fpr <= 1
    ):
        raise ValueError(f"max_fpr must be a number in (0, 1], got {max_fpr!r}")
    return float(max_fpr)


def _check_method(method: str, num_thresholds: int) -> None:
    if method not in AUPRO_METHODS:
        raise ValueError(f"method must be one of {AUPRO_METHODS}, got {method!r}")
    if (
        isinstance(num_thresholds, bool)
        or not isinstance(num_thresholds, (int, np.integer))
        or num_thresholds < 1
    ):
        raise ValueError(f"num_thresholds must be a positive integer, got {num_thresholds!r}")


__all__ = [
    "AUPRO_METHODS",
    "DEFAULT_MAX_FPR",
    "DEFAULT_NUM_THRESHOLDS",
    "ProCurve",
    "aupro",
    "pro_curve",
]
