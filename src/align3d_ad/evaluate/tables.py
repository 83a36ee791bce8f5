"""Result tables: ``metrics.json`` (everything), ``metrics.csv`` (flat) and ``metrics.md`` (x100, one decimal).

The JSON layout is the source of truth::

    {"setting": str, "backbone": str, "random_weights": bool,
     "views": {dataset: {"preset", "source", "views"}},          # test and reproduce
     "skipped": {category: [sample_id]}, "failed": {category: error},   # test only
     "runs": {run_name: {"categories": {category: {variant: {metric: value}}},
                         "mean": {variant: {metric: value}}}},
     "categories": {category: {variant: {metric: value}}},   # mean over runs
     "mean": {variant: {metric: value}}}

``variant`` is ``object`` (O-AUROC, O-AP), ``foreground`` (P-AUROC, AUPRO over valid points only),
``grid`` (the resized organised grid with background scored 0) or ``reference`` (the published
tables' arithmetic, REFERENCE.md §4; the variant printed beside the published row).

Averaging (stated in every table): ``categories`` is, per category, the mean over the runs that
tested it; ``mean`` the mean of those over categories. ``mean_of_runs`` is the other convention,
the mean over runs of each run's own mean over its categories; the two differ when the runs test
different categories (one-vs-rest: each auxiliary is left out of its own run). A category whose
value is undefined (NaN) is left out of a mean; ``mean_count`` says over how many categories each
mean runs and ``undefined`` names the categories left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from .published import METRICS, published_row

VARIANTS = ("object", "foreground", "grid", "reference")
#: The point variant printed beside a published row (falls back to ``grid`` in older documents).
PUBLISHED_VARIANT = "reference"
METRIC_NAMES = {"o_auroc": "O-AUROC", "o_ap": "O-AP", "p_auroc": "P-AUROC", "aupro": "AUPRO"}

Scores = dict[str, dict[str, float]]  # variant -> metric -> value


def mean_scores(per_category: Mapping[str, Scores]) -> Scores:
    """Mean over categories of every (variant, metric), ignoring NaN (undefined) entries."""
    out: Scores = {}
    for scores in per_category.values():
        for variant, metrics in scores.items():
            for metric, value in metrics.items():
                out.setdefault(variant, {}).setdefault(metric, []).append(value)  # type: ignore[arg-type]
    return {v: {m: _nanmean(vals) for m, vals in ms.items()} for v, ms in out.items()}  # type: ignore[arg-type]


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def undefined_categories(per_category: Mapping[str, Scores]) -> dict[str, dict[str, list[str]]]:
    """``{variant: {metric: [category, ...]}}`` of the NaN (undefined) entries, left out of means."""
    out: dict[str, dict[str, list[str]]] = {}
    for category, scores in per_category.items():
        for variant, metrics in scores.items():
            for metric, value in metrics.items():
                names = out.setdefault(variant, {}).setdefault(metric, [])
                if value is None or math.isnan(value):
                    names.append(category)
    return out


def combine_runs(runs: Mapping[str, Mapping[str, Scores]], **header: Any) -> dict[str, Any]:
    """Build the metrics.json document from per-run, per-category scores (module docstring)."""
    categories = sorted({c for run in runs.values() for c in run})
    per_category = {c: mean_scores({r: runs[r][c] for r in runs if c in runs[r]}) for c in categories}
    run_means = {name: mean_scores(run) for name, run in runs.items()}
    undefined = undefined_categories(per_category)
    return {
        **header,
        "runs": {name: {"categories": dict(run), "mean": run_means[name]} for name, run in runs.items()},
        "categories": per_category,
        "mean": mean_scores(per_category),
        "mean_of_runs": mean_scores(run_means),
        "mean_count": {v: {m: len(per_category) - len(names) for m, names in ms.items()}
                       for v, ms in undefined.items()},
        "undefined": {v: {m: names for m, names in ms.items() if names}
                      for v, ms in undefined.items() if any(ms.values())},
        "runs_per_category": {c: sum(c in run for run in runs.values()) for c in categories},
    }  # fmt: skip


def headline(scores: Scores, variant: str) -> dict[str, float]:
    """The four headline numbers: object metrics plus the point metrics of ``variant``."""
    obj, pts = scores.get("object", {}), scores.get(variant, {})
    return {
        "o_auroc": obj.get("o_auroc", math.nan),
        "o_ap": obj.get("o_ap", math.nan),
        "p_auroc": pts.get("p_auroc", math.nan),
        "aupro": pts.get("aupro", math.nan),
    }


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def to_markdown(doc: Mapping[str, Any]) -> str:
    """Per-category tables (x100, one decimal) for both point variants, plus the published row."""
    lines = [f"# Results: {doc.get('setting', 'custom')}", ""]
    if doc.get("random_weights"):
        lines += ["**Backbone with random weights: these numbers are not comparable with published "
                  "results.**", ""]
    if doc.get("backbone"):
        lines += [f"Backbone: `{doc['backbone']}`", ""]
    lines += _notes(doc)
    header = "| category | O-AUROC | O-AP | P-AUROC | AUPRO |"
    for variant, title in VARIANT_TITLES:
        if variant == "reference" and not doc.get("mean", {}).get("reference"):
            continue  # documents written before the reference variant existed
        lines += [f"## Point metrics: {title}", "", header, "|---|---|---|---|---|"]
        rows = dict(doc.get("categories", {}))
        rows["**mean**"] = doc.get("mean", {})
        for name, scores in rows.items():
            h = headline(scores, variant)
            lines.append(f"| {name} | " + " | ".join(_fmt(h[m]) for m in METRICS) + " |")
        lines += ["", *_mean_notes(doc, variant), ""]
    published = published_row(str(doc.get("setting", "")))
    if published:
        variant = PUBLISHED_VARIANT if doc.get("mean", {}).get(PUBLISHED_VARIANT) else "grid"
        lines += [f"## Beside the published numbers (this run: `{variant}` variant for point "
                  "metrics)", "", header, "|---|---|---|---|---|"]  # fmt: skip
        ours = headline(doc.get("mean", {}), variant)
        lines.append("| this run | " + " | ".join(_fmt(ours[m]) for m in METRICS) + " |")
        if doc.get("mean_of_runs") and len(doc.get("runs", {})) > 1:
            other = headline(doc["mean_of_runs"], variant)
            lines.append("| this run, mean of run means | "
                         + " | ".join(_fmt(other[m]) for m in METRICS) + " |")  # fmt: skip
        for method, values in published.items():
            lines.append(f"| {method} | " + " | ".join(_fmt(values[m] / 100) for m in METRICS) + " |")
        lines += ["", f"The `this run` row uses the `{variant}` point metrics "
                  f"({dict(VARIANT_TITLES)[variant]}).", ""]  # fmt: skip
    return "\n".join(lines)


#: The point variants of the markdown tables and their titles.
VARIANT_TITLES = (
    ("foreground", "points only (valid foreground points)"),
    ("grid", "resized organised grid, background scored 0"),
    ("reference", "reference style, the published tables' arithmetic (bilinear GT > 0.5, every "
                  "336² cell as post-processed, cflow AUPRO; Real3D-AD: every resampled point)"),
)  # fmt: skip


def _mean_notes(doc: Mapping[str, Any], variant: str) -> list[str]:
    """How the means of one variant were taken: over runs, over categories, NaN left out."""
    n = len(doc.get("categories", {}))
    runs = doc.get("runs_per_category") or {}
    lines = []
    if runs and len(doc.get("runs", {})) > 1:
        counts = sorted(set(runs.values()))
        lines.append(f"Each category: mean over the {'/'.join(map(str, counts))} runs that tested "
                     f"it; **mean**: over the {n} categories (the mean of the runs' own means is in "
                     "metrics.json, `mean_of_runs`).")  # fmt: skip
    undefined = doc.get("undefined") or {}
    groups = [undefined.get(variant, {})]
    if variant == "foreground":  # the object metrics are shared by every table: noted once
        groups.insert(0, undefined.get("object", {}))
    for names in groups:
        for metric, cats in names.items():
            if cats:
                lines.append(f"{METRIC_NAMES[metric]} undefined (–) for {', '.join(cats)}: its "
                             f"mean runs over {n - len(cats)} of {n} categories.")  # fmt: skip
    return lines


def _notes(doc: Mapping[str, Any]) -> list[str]:
    """The views, the samples skipped and the categories that failed, one line each."""
    lines = [f"Views on {dataset}: `{v['preset']}` ({v['source']})"
             for dataset, v in (doc.get("views") or {}).items()]  # fmt: skip
    skipped = {c: ids for c, ids in (doc.get("skipped") or {}).items() if ids}
    if skipped:
        listed = "; ".join(f"{c}: {', '.join(ids)}" for c, ids in skipped.items())
        total = sum(len(ids) for ids in skipped.values())
        lines.append(f"skipped: {total} sample(s) without ground truth ({listed})")
    for category, cause in (doc.get("failed") or {}).items():
        lines.append(f"**failed: {category} was not scored** ({cause})")
    return [*lines, ""] if lines else []


def to_csv(doc: Mapping[str, Any]) -> str:
    """One row per (run, category, variant, metric), plus the means (run ``mean``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "category", "variant", "metric", "value"])
    for run, body in doc.get("runs", {}).items():
        for category, scores in {**body["categories"], "mean": body["mean"]}.items():
            _csv_rows(writer, run, category, scores)
    for category, scores in {**doc.get("categories", {}), "mean": doc.get("mean", {})}.items():
        _csv_rows(writer, "mean", category, scores)
    return buffer.getvalue()


def _csv_rows(writer: Any, run: str, category: str, scores: Scores) -> None:
    for variant, metrics in scores.items():
        for metric, value in metrics.items():
            writer.writerow([run, category, variant, metric, "" if math.isnan(value) else f"{value:.6f}"])


def write_results(out_dir: str | Path, doc: Mapping[str, Any]) -> str:
    """Write metrics.json, metrics.csv and metrics.md into ``out_dir``; return the markdown."""
    out_dir = Path(out_dir)
    markdown = to_markdown(doc)
    atomic_write_text(out_dir / "metrics.json", json.dumps(_json_safe(doc), indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.csv", to_csv(doc))
    atomic_write_text(out_dir / "metrics.md", markdown + "\n")
    return markdown


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_results(path: str | Path) -> dict[str, Any]:
    """Read a metrics.json back, turning null into NaN."""
    def restore(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        return math.nan if value is None else value
    return restore(json.loads(Path(path).read_text(encoding="utf-8")))
