"""Plotly figures (plain JSON-able dicts) of a run's saved scores: ROC and PR curves at object
and point level, and the score histograms of good vs defective samples and normal vs anomalous
points, with a threshold marked where one is known.

Curves are computed with scikit-learn from ``scores/<category>.npz`` (the ``foreground`` point
variant: the scored points of every sample); point curves of more than ``POINT_SAMPLE`` points use
a seeded random subsample (the tables' numbers are always exact), and every curve is thinned to at
most ``CURVE_POINTS`` vertices for display.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from ..evaluate.scores import CategoryScores

#: Most vertices of a drawn curve.
CURVE_POINTS = 400
#: Most points a point-level curve or histogram is computed from.
POINT_SAMPLE = 2_000_000
#: Bins of the point-score histograms.
BINS = 40
GOOD, BAD = "#1f77b4", "#d62728"


@dataclass
class CurveSet:
    """The curves of one tested category (of one run)."""

    label: str  #: legend name, e.g. ``cookie`` or ``cookie (bagel)``
    category: str
    object_scores: np.ndarray
    object_labels: np.ndarray
    point_scores: np.ndarray  #: pooled (subsampled) point scores
    point_labels: np.ndarray
    subsampled_from: int | None = None  #: point count before subsampling, if subsampled
    run: str = "."  #: the run folder the scores came from, relative to the report's (posix)


def load_curve_sets(run_dir: str | Path, *, seed: int = 0) -> list[CurveSet]:
    """Every ``scores/<category>.npz`` under ``run_dir``, labelled with its run when there are several."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.rglob("scores/*.npz"))
    runs = {f.parent.parent.relative_to(run_dir) for f in files}
    out = []
    for f in files:
        scores = CategoryScores.load(f)
        run = f.parent.parent.relative_to(run_dir)
        label = scores.category if len(runs) == 1 else f"{scores.category} ({run.as_posix()})"
        cs = curve_set(scores, label=label, seed=seed)
        cs.run = run.as_posix()
        out.append(cs)
    return out


def curve_set(scores: CategoryScores, *, label: str | None = None, seed: int = 0) -> CurveSet:
    """The pooled scores of one category, point scores subsampled to ``POINT_SAMPLE``."""
    pts = np.concatenate(scores.point_scores) if scores.point_scores else np.zeros(0, np.float32)
    lab = np.concatenate(scores.point_labels) if scores.point_labels else np.zeros(0, bool)
    total = None
    if len(pts) > POINT_SAMPLE:
        total = len(pts)
        rows = np.random.default_rng(seed).choice(len(pts), POINT_SAMPLE, replace=False)
        pts, lab = pts[rows], lab[rows]
    return CurveSet(label or scores.category, scores.category,
                    np.asarray(scores.object_scores, dtype=np.float64),
                    np.asarray(scores.labels, dtype=bool), pts.astype(np.float64), lab.astype(bool),
                    total)  # fmt: skip


def thin(x: np.ndarray, y: np.ndarray, most: int = CURVE_POINTS) -> tuple[list, list]:
    """At most ``most`` vertices of a curve, evenly spaced along it, ends kept (as lists)."""
    if len(x) > most:
        rows = np.unique(np.round(np.linspace(0, len(x) - 1, most)).astype(int))
        x, y = x[rows], y[rows]
    return np.round(x, 5).tolist(), np.round(y, 5).tolist()


def _defined(labels: np.ndarray) -> bool:
    return labels.size > 0 and labels.any() and not labels.all()


#: Colours of the categories' curves, in order (plotly's default colour way), so that a PR
#: panel's chance line has its curve's colour.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def _curve_traces(sets: Sequence[CurveSet], level: str, kind: str) -> list[dict]:
    """One line per category (those with both classes); PR panels also get each category's
    chance level, its anomalous share, dotted in its colour (toggled with it in the legend)."""
    traces = []
    for i, cs in enumerate(sets):
        colour = COLOURS[i % len(COLOURS)]
        y, s = (cs.object_labels, cs.object_scores) if level == "object" else (cs.point_labels, cs.point_scores)
        finite = np.isfinite(s)
        y, s = y[finite], s[finite]
        if not _defined(y):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "roc":
                fpr, tpr, _ = roc_curve(y, s)
                x, v = thin(fpr, tpr)
            else:
                precision, recall, _ = precision_recall_curve(y, s)
                x, v = thin(recall[::-1], precision[::-1])
        traces.append({"type": "scatter", "mode": "lines", "name": cs.label, "x": x, "y": v,
                       "legendgroup": cs.label,
                       "line": {"width": 1.5, "shape": "linear", "color": colour}})  # fmt: skip
        if kind == "pr":
            share = round(float(y.mean()), 5)
            traces.append({"type": "scatter", "mode": "lines", "x": [0, 1], "y": [share, share],
                           "name": f"{cs.label}: chance ({share:.1%} anomalous)",
                           "legendgroup": cs.label, "showlegend": False,
                           "line": {"dash": "dot", "color": colour, "width": 1}})  # fmt: skip
    return traces


def curve_figures(sets: Sequence[CurveSet]) -> list[tuple[str, dict]]:
    """``(title, figure)`` of the four curve plots: ROC and PR at object and point level."""
    out = []
    for level, what in (("object", "samples"), ("point", "points (foreground)")):
        for kind, (xt, yt) in (("roc", ("false positive rate", "true positive rate")),
                               ("pr", ("recall", "precision"))):  # fmt: skip
            traces = _curve_traces(sets, level, kind)
            if kind == "roc" and traces:
                traces.append({"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1],
                               "name": "chance", "line": {"dash": "dot", "color": "#999", "width": 1}})  # fmt: skip
            if kind == "pr" and traces:  # a legend entry for the categories' dotted lines
                traces.append({"type": "scatter", "mode": "lines", "x": [None], "y": [None],
                               "name": "chance", "hoverinfo": "skip",
                               "line": {"dash": "dot", "color": "#999", "width": 1}})  # fmt: skip
            title = f"{'ROC' if kind == 'roc' else 'Precision-recall'}: {what}"
            layout = {"title": {"text": title, "font": {"size": 14}},
                      "xaxis": {"title": {"text": xt}, "range": [0, 1]},
                      "yaxis": {"title": {"text": yt}, "range": [0, 1.02]},
                      "margin": {"l": 50, "r": 10, "t": 40, "b": 45}, "height": 360,
                      "legend": {"font": {"size": 10}}}  # fmt: skip
            out.append((title, {"data": traces, "layout": layout}))
    return out


def _threshold_shape(value: float | None) -> list[dict]:
    if value is None or not np.isfinite(value):
        return []
    return [{"type": "line", "xref": "x", "yref": "paper", "x0": value, "x1": value, "y0": 0, "y1": 1,
             "line": {"color": "#000", "width": 1.5, "dash": "dash"}}]  # fmt: skip


def _bars(values: np.ndarray, edges: np.ndarray, name: str, color: str) -> dict:
    counts, _ = np.histogram(values, bins=edges)
    density = counts / max(counts.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    return {"type": "bar", "name": f"{name} ({len(values):,})", "x": np.round(centres, 6).tolist(),
            "y": np.round(density, 6).tolist(), "marker": {"color": color}, "opacity": 0.6,
            "width": float(edges[1] - edges[0])}  # fmt: skip


def _edges(values: np.ndarray, threshold: float | None) -> np.ndarray:
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)


def histogram_figure(cs: CurveSet, level: str, threshold: float | None = None) -> dict:
    """Histogram (fraction per bin) of good vs defective samples or normal vs anomalous points."""
    if level == "object":
        y, s, names = cs.object_labels, cs.object_scores, ("good samples", "defective samples")
    else:
        y, s, names = cs.point_labels, cs.point_scores, ("normal points", "anomalous points")
    finite = np.isfinite(s)
    y, s = y[finite], s[finite]
    edges = _edges(s, threshold)
    data = [_bars(s[~y], edges, names[0], GOOD), _bars(s[y], edges, names[1], BAD)]
    note = "" if threshold is None else f"; threshold {threshold:.4g} dashed"
    layout = {"title": {"text": f"{cs.label}: {level} scores{note}", "font": {"size": 13}},
              "barmode": "overlay", "height": 260, "shapes": _threshold_shape(threshold),
              "margin": {"l": 45, "r": 10, "t": 35, "b": 35},
              # no x-axis title: the panel's title names the scores, and the legend sits there
              "yaxis": {"title": {"text": "fraction"}},
              "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.25}}  # fmt: skip
    return {"data": data, "layout": layout}


def thresholds_of(doc: Mapping[str, Any], category: str, run: str = ".") -> dict[str, float]:
    """Known thresholds of ``category`` in a results document: ``{"object": t, "point": t}``.

    The hook for calibration: a results document may carry ``"thresholds": {key: {"object":
    float, "point": float}}``, the key being the category for the scores of the run folder itself
    (``scores/<category>.npz``), ``<run>/<category>`` for those of a sub-run (``test --shots``:
    ``shots4/draw0/cookie``), or ``*`` for every category (``predict --calibration``: one
    calibration for every cloud). Categories or keys it lacks have no threshold.
    """
    table = doc.get("thresholds") or {}
    key = category if run in ("", ".") else f"{run}/{category}"
    found = table.get(key) or table.get("*") or {}
    return {k: float(v) for k, v in found.items()
            if k in ("object", "point") and v is not None and np.isfinite(float(v))}  # fmt: skip
