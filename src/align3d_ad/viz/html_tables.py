"""HTML tables of a results document (``metrics.json``): both point-metric variants, the published
row beside ours, and any further metrics the document carries (few-shot or decision metrics of a
calibrated run: every variant other than ``object``/``foreground``/``grid`` is shown as it is)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..evaluate.published import METRICS, published_row
from ..evaluate.tables import METRIC_NAMES, VARIANTS, headline

POINT_VARIANTS = (
    ("foreground", "Point metrics: points only (valid foreground points)"),
    ("grid", "Point metrics: resized organised grid, background scored 0 (published protocol)"),
)


def percent(value: Any) -> str:
    """x100 with one decimal; an en dash for NaN or missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.1f}"


def _table(head: Sequence[str], rows: Sequence[tuple[str, Sequence[str], str]]) -> str:
    """``rows``: (first cell, other cells, css class)."""
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for name, cells, css in rows:
        cls = f' class="{css}"' if css else ""
        out.append(f"<tr{cls}><td>{escape(name)}</td>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _variant_table(doc: Mapping[str, Any], variant: str) -> str:
    rows = [(name, [percent(headline(s, variant)[m]) for m in METRICS], "")
            for name, s in (doc.get("categories") or {}).items()]  # fmt: skip
    rows.append(("mean", [percent(headline(doc.get("mean", {}), variant)[m]) for m in METRICS], "mean"))
    return _table(["category", *(METRIC_NAMES[m] for m in METRICS)], rows)


def _published_table(doc: Mapping[str, Any]) -> str:
    published = published_row(str(doc.get("setting", "")))
    if not published:
        return ""
    ours = headline(doc.get("mean", {}), "grid")
    rows = [("this run", [percent(ours[m]) for m in METRICS], "mean")]
    rows += [(method, [percent(v[m] / 100) for m in METRICS], "published") for method, v in published.items()]
    return ("<h3>Beside the published numbers (grid variant for point metrics)</h3>\n"
            + _table(["", *(METRIC_NAMES[m] for m in METRICS)], rows))  # fmt: skip


def extra_variants(doc: Mapping[str, Any]) -> list[str]:
    """Variants of the document beyond the three of :data:`~align3d_ad.evaluate.tables.VARIANTS`."""
    found: list[str] = []
    for scores in [*(doc.get("categories") or {}).values(), doc.get("mean") or {}]:
        found += [v for v in scores if v not in VARIANTS and v not in found and isinstance(scores[v], Mapping)]
    return found


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _extra_table(doc: Mapping[str, Any], variant: str) -> str:
    rows_in = {**(doc.get("categories") or {}), "mean": doc.get("mean") or {}}
    metrics: list[str] = []
    for scores in rows_in.values():
        metrics += [m for m in (scores.get(variant) or {}) if m not in metrics]
    rows = [(name, [_number((s.get(variant) or {}).get(m, math.nan)) for m in metrics],
             "mean" if name == "mean" else "") for name, s in rows_in.items()]  # fmt: skip
    return f"<h3>{escape(variant)}</h3>\n" + _table(["category", *metrics], rows)


def metrics_section(doc: Mapping[str, Any]) -> str:
    """The metric tables of ``doc`` (x100, one decimal), with its notes (views, skipped, failed)."""
    parts = ['<h2 id="metrics">Metrics</h2>']
    for dataset, v in (doc.get("views") or {}).items():
        parts.append(f"<p class=muted>Views on {escape(dataset)}: <code>{escape(str(v.get('preset')))}"
                     f"</code> ({escape(str(v.get('source')))})</p>")  # fmt: skip
    for category, ids in (doc.get("skipped") or {}).items():
        if ids:
            parts.append(f"<p class=muted>skipped in {escape(category)}: {len(ids)} sample(s) without "
                         f"ground truth ({escape(', '.join(ids))})</p>")  # fmt: skip
    for category, cause in (doc.get("failed") or {}).items():
        parts.append(f'<p class="warning">failed: {escape(category)} was not scored ({escape(str(cause))})</p>')
    for variant, title in POINT_VARIANTS:
        parts += [f"<h3>{escape(title)}</h3>", _variant_table(doc, variant)]
    parts.append(_published_table(doc))
    extra = extra_variants(doc)
    if extra:
        parts.append("<h3>Further metrics in this results document</h3>")
        parts += [_extra_table(doc, v) for v in extra]
    return "\n".join(p for p in parts if p)
