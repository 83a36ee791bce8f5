"""Input validation shared by the metrics (:mod:`.metrics`) and AUPRO (:mod:`.aupro`).

Point-level inputs are given per sample: a list of arrays, each an organised grid (H, W) or a
point vector (N,); shapes may differ between samples but labels, scores and regions of one sample
must share a shape. A single array is one sample ((N,) or (H, W)); a 3-D array is a stack (B, H, W).
Torch tensors (on any device) are accepted wherever an array is.

Invalid input (mismatched shapes, labels that are not 0/1, non-finite scores) raises
``ValueError`` (or its subclass :class:`~align3d_ad.errors.ShapeError`) quoting the value; a metric
that is undefined for its input emits an :class:`UndefinedMetricWarning` and returns NaN.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning as _SklearnUndefinedMetricWarning

from ..errors import ShapeError

ArrayLike = Any  # numpy array, torch tensor or nested sequence


class UndefinedMetricWarning(_SklearnUndefinedMetricWarning):
    """A metric is undefined for its input (e.g. a single class); NaN is returned.

    Subclasses scikit-learn's warning of the same name, so filters on either catch it.
    """


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_samples(x: ArrayLike, name: str) -> list[np.ndarray]:
    if isinstance(x, (list, tuple)):
        return [_to_numpy(a) for a in x]
    arr = _to_numpy(x)
    if arr.ndim in (1, 2):
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ShapeError(
        f"{name} must be a list of per-sample arrays, one (N,) or (H, W) array, or a "
        f"(B, H, W) stack, got shape {arr.shape}"
    )


def _matching_samples(x: ArrayLike, ref: list[np.ndarray], name: str) -> list[np.ndarray]:
    samples = _as_samples(x, name)
    if len(samples) != len(ref):
        raise ValueError(
            f"{name} must hold one array per sample of labels ({len(ref)}), got {len(samples)}"
        )
    for i, (r, a) in enumerate(zip(ref, samples)):
        if a.shape != r.shape:
            raise ShapeError(
                f"{name}[{i}] must have the shape of labels[{i}] {r.shape}, got {a.shape}"
            )
    return samples


def _flat_concat(samples: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([a.ravel() for a in samples]) if samples else np.zeros(0)


def _object_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, s = _to_numpy(labels), _to_numpy(scores)
    if y.ndim != 1 or s.shape != y.shape:
        raise ShapeError(
            f"labels and scores must both have shape (B,), got {y.shape} and {s.shape}"
        )
    return _binary(y, "labels"), _finite(s, "scores")


def _binary(y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype == bool:
        return y
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(
            f"{name} must be bool or 0/1, got values {np.unique(y[bad])[:5].tolist()}; "
            "binarise masks first (e.g. mask > 0)"
        )
    return y.astype(bool)


def _finite(s: np.ndarray, name: str) -> np.ndarray:
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"{name} must be real numbers, got dtype {s.dtype}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/inf values")
    return s


def _two_classes(y: np.ndarray, metric: str = "point_auroc") -> bool:
    n_pos = int(y.sum())
    if 0 < n_pos < y.size:
        return True
    _warn_undefined(metric, f"only one class present ({n_pos} of {y.size} positive)")
    return False


def _warn_undefined(metric: str, why: str) -> None:
    warnings.warn(
        f"{metric} is undefined: {why}; returning NaN", UndefinedMetricWarning, stacklevel=4
    )
