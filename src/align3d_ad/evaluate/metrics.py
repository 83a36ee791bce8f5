"""Anomaly-detection ranking metrics: O-AUROC, O-AP and P-AUROC (METHOD.md §7, DATASETS.md §4).

Naming follows scikit-learn: every value here is a score, higher is better, in [0, 1]. A metric
that is undefined for its input (one class only, no anomalous region, no normal element) emits an
:class:`~._inputs.UndefinedMetricWarning` and returns NaN; invalid input (mismatched shapes, labels
that are not 0/1, non-finite scores, bad options) raises ``ValueError`` quoting the value.

Point-level inputs are given per sample: a list of arrays, each an organised grid (H, W) or a
point vector (N,); shapes may differ between samples but labels, scores and regions of one sample
must share a shape. A single array is one sample ((N,) or (H, W)); a 3-D array is a stack (B, H, W).

AUPRO and its PRO curve live in :mod:`.aupro`; :func:`point_metrics` reports P-AUROC and AUPRO of
one category together, from one validation and (for ``method="exact"``) one sort.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ._inputs import ArrayLike, _object_inputs, _two_classes
from .aupro import (
    DEFAULT_MAX_FPR,
    DEFAULT_NUM_THRESHOLDS,
    ProCurve,
    _area_to,
    _check_fpr,
    _check_method,
    _official_curve,
    _pool,
    _pro_defined,
    _ranked_cumsums,
    _trapezoid,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectMetrics:
    """Object-level metrics of one category: O-AUROC and O-AP, NaN where undefined."""

    o_auroc: float
    o_ap: float

    def to_dict(self) -> dict[str, float]:
        """Return ``{"o_auroc": ..., "o_ap": ...}``."""
        return asdict(self)


@dataclass(frozen=True)
class PointMetrics:
    """Point-level metrics of one category: P-AUROC and AUPRO, NaN where undefined."""

    p_auroc: float
    aupro: float

    def to_dict(self) -> dict[str, float]:
        """Return ``{"p_auroc": ..., "aupro": ...}``."""
        return asdict(self)


# ----------------------------------------------------------------------------- object level


def object_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of per-object scores (scikit-learn ``roc_auc_score``).

    Args:
        labels: (B,) object labels, bool or 0/1 (1 = anomalous).
        scores: (B,) real anomaly scores, higher = more anomalous.

    Returns:
        O-AUROC in [0, 1]; NaN with an :class:`UndefinedMetricWarning` if one class only.

    Examples:
        >>> object_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y, s = _object_inputs(labels, scores)
    if not _two_classes(y, "object_auroc"):
        return float("nan")
    return float(roc_auc_score(y, s))


def object_ap(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision of per-object scores (scikit-learn ``average_precision_score``).

    Args:
        labels: (B,) object labels, bool or 0/1 (1 = anomalous).
        scores: (B,) real anomaly scores, higher = more anomalous.

    Returns:
        O-AP in [0, 1]; NaN with an :class:`UndefinedMetricWarning` if one class only.
    """
    y, s = _object_inputs(labels, scores)
    if not _two_classes(y, "object_ap"):
        return float("nan")
    return float(average_precision_score(y, s))


def object_metrics(labels: ArrayLike, scores: ArrayLike) -> ObjectMetrics:
    """O-AUROC and O-AP of one category (see :func:`object_auroc`, :func:`object_ap`)."""
    return ObjectMetrics(o_auroc=object_auroc(labels, scores), o_ap=object_ap(labels, scores))


# ------------------------------------------------------------------------------ point level


def point_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """AUROC over the concatenation of all elements of all samples.

    Computed from one sort with ties merged, identical to scikit-learn's ``roc_auc_score`` on the
    concatenated arrays, but without its per-call overhead on ~10^7 elements.

    Args:
        labels: per-sample labels (list of (N,) or (H, W) arrays, bool or 0/1).
        scores: per-sample scores, same shapes as ``labels``.

    Returns:
        P-AUROC in [0, 1]; NaN with an :class:`UndefinedMetricWarning` if one class only.
    """
    pooled = _pool(labels, scores, None, need_regions=False)
    if not _two_classes(pooled.labels, "point_auroc"):
        return float("nan")
    neg, pos = (~pooled.labels).astype(np.int64), pooled.labels.astype(np.int64)
    fp, tp = _ranked_cumsums(pooled.scores, [neg, pos])
    return _trapezoid(fp / fp[-1], tp / tp[-1])


def point_metrics(
    labels: ArrayLike,
    scores: ArrayLike,
    regions: ArrayLike | None = None,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    method: Literal["exact", "official"] = "exact",
    num_thresholds: int = DEFAULT_NUM_THRESHOLDS,
) -> PointMetrics:
    """P-AUROC and AUPRO of one category from one validation and (for ``"exact"``) one sort.

    Both point-metric variants of METHOD.md §7 go through here: pass the valid foreground points
    of each sample, or the resized organised grids with background scored 0.

    Args and Raises: as :func:`~.aupro.aupro`.

    Returns:
        :class:`PointMetrics`; each field NaN (with a warning) where undefined.
    """
    _check_method(method, num_thresholds)
    max_fpr = _check_fpr(max_fpr)
    pooled = _pool(labels, scores, regions, need_regions=True)
    neg, pos = (~pooled.labels).astype(np.int64), pooled.labels.astype(np.int64)
    fp, tp, pw = _ranked_cumsums(pooled.scores, [neg, pos, pooled.pro_weight])
    p_auroc = _trapezoid(fp / fp[-1], tp / tp[-1]) if _two_classes(pooled.labels) else np.nan
    value = float("nan")
    if _pro_defined(pooled):
        curve = (
            ProCurve(fpr=fp / fp[-1], pro=np.minimum(pw, 1.0))
            if method == "exact"
            else _official_curve(pooled, num_thresholds)
        )
        value = _area_to(curve.fpr, curve.pro, max_fpr)
    return PointMetrics(p_auroc=float(p_auroc), aupro=value)


__all__ = [
    "ObjectMetrics",
    "PointMetrics",
    "object_ap",
    "object_auroc",
    "object_metrics",
    "point_auroc",
    "point_metrics",
]
