"""Thresholds from score samples: at a false-alarm rate on normal scores, or F1-best on labels.

A scan (or point) is flagged anomalous when its score is **strictly above** the threshold.

* :func:`rate_threshold`: with n normal scores sorted ``s(1) <= ... <= s(n)`` and a false-alarm
  rate r, at most ``a = floor(r n)`` normals may be flagged, so the threshold is ``s(n - a)``: the
  empirical false-alarm rate on the sample is at most r. When ``r n < 1`` (a = 0, e.g. 1 % with
  fewer than 100 normals) the rate cannot be measured on the sample: the *margin rule* takes
  ``max(s(n), mean + z(1 - r) * std)`` (a normal tail fitted to the sample, z the standard normal
  quantile), and the result says so (``how = "margin"``) so the caller can warn.
* :func:`f1_threshold`: the threshold of best F1 on labelled scores (midway between the lowest
  flagged score and the highest score left unflagged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..errors import ConfigError

QUANTILE, MARGIN, F1 = "quantile", "margin", "f1"


@dataclass(frozen=True)
class Threshold:
    """A threshold and how it was chosen (``quantile`` | ``margin`` | ``f1``) from how many scores."""

    value: float
    how: str
    count: int

    def to_dict(self) -> dict:
        return {"value": self.value, "how": self.how, "count": self.count}


def check_rate(rate: float) -> float:
    """``rate`` if it lies in (0, 1), else ConfigError."""
    if not (isinstance(rate, (int, float)) and 0.0 < float(rate) < 1.0):
        raise ConfigError(f"false-alarm rate must lie in (0, 1), got {rate}")
    return float(rate)


def _finite(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ConfigError("scores must hold at least one finite value to set a threshold, got none")
    return s


def rate_threshold(normal_scores, rate: float) -> Threshold:
    """The threshold flagging at most ``rate`` of ``normal_scores`` (margin rule below 1/n)."""
    rate = check_rate(rate)
    s = np.sort(_finite(normal_scores))
    n = s.size
    allowed = math.floor(rate * n + 1e-9)
    if allowed >= 1:
        return Threshold(float(s[n - allowed - 1]), QUANTILE, n)
    z = NormalDist().inv_cdf(1.0 - rate)
    std = float(s.std(ddof=1)) if n > 1 else 0.0
    return Threshold(float(max(s[-1], s.mean() + z * std)), MARGIN, n)


def f1_threshold(scores, labels) -> Threshold:
    """The F1-best threshold of labelled scores (labels: 1 anomalous, 0 normal)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ConfigError(f"labels must have one entry per score ({s.size}), got {y.size}")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if not y.any() or y.all():
        raise ConfigError("labels must hold both normal and anomalous scores to pick an F1 threshold")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    f1 = 2 * tp / (tp + fp + y.sum())
    cut = np.r_[s[:-1] > s[1:], True]  # only between distinct scores
    best = int(np.flatnonzero(cut)[np.argmax(f1[cut])])
    lower = s[best + 1] if best + 1 < s.size else s[best] - max(1e-6, abs(s[best]) * 1e-6)
    return Threshold(float((s[best] + lower) / 2), F1, int(s.size))
