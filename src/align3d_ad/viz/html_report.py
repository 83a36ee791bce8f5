"""``report.html``: one self-contained page a person can look at, offline, from disk.

plotly.js (from the ``plotly`` package) is embedded once; the page loads nothing else (no CDN, no
server): pictures are data URIs, figures and clouds JSON in ``<script type="application/json">``
blocks, the viewer's code :file:`assets/report.js`. Sections: header (version, backbone and its
weights fingerprint, the random-weights warning, config summary, run time), metric tables
(:mod:`.html_tables`), ROC/PR curves and score histograms (:mod:`.curves`), the gallery with the
interactive 3D viewer (:mod:`.gallery`, :mod:`.cloud_view`), and for unlabelled clouds a table of
object scores.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .curves import CurveSet, curve_figures, histogram_figure, thresholds_of
from .gallery import GalleryItem
from .html_tables import metrics_section

ASSETS = Path(__file__).parent / "assets"
#: Name of the report in a run folder.
REPORT_HTML = "report.html"


@dataclass
class ReportHeader:
    """What the top of the report says about the run."""

    title: str
    version: str
    backbone: str = ""
    fingerprint: str = ""
    random_weights: bool = False
    facts: list[tuple[str, str]] = field(default_factory=list)  #: config summary etc.
    config_yaml: str | None = None  #: shown folded
    run_seconds: float | None = None


def _script_json(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _header(h: ReportHeader) -> str:
    rows = [("align3d-ad", h.version)]
    if h.backbone:
        rows.append(("backbone", h.backbone))
    if h.fingerprint:
        rows.append(("weights fingerprint", h.fingerprint))
    rows += h.facts
    rows.append(("run time", _duration(h.run_seconds)))
    parts = [f"<h1>{escape(h.title)}</h1>"]
    if h.random_weights:
        parts.append('<p class="warning" id="random-weights"><b>Random backbone weights:</b> '
                     f"{escape(h.backbone or 'the backbone')} has randomly initialised weights, so "
                     "these numbers are <b>not comparable with published results</b> (pass "
                     "<code>--weights</code> for the real backbone).</p>")  # fmt: skip
    parts.append('<table class="meta">' + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>")
    if h.config_yaml:
        parts.append(f"<details><summary>full configuration</summary><pre>{escape(h.config_yaml)}"
                     "</pre></details>")  # fmt: skip
    return "\n".join(parts)


class _Figures:
    """Collects plotly figures; each becomes a ``div.plot`` drawn when scrolled into view."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}

    def div(self, figure: dict) -> str:
        key = f"f{len(self.figures)}"
        self.figures[key] = figure
        return f'<div class="plot" data-fig="{key}"></div>'


def _curves_section(sets: Sequence[CurveSet], doc: Mapping[str, Any], figs: _Figures) -> str:
    parts = ['<h2 id="curves">Curves</h2>']
    sub = [cs for cs in sets if cs.subsampled_from]
    if sub:
        parts.append("<p class=muted>Point-level curves and histograms of "
                     + ", ".join(f"{escape(cs.label)} ({cs.subsampled_from:,} points)" for cs in sub)
                     + f" use a random subsample of {len(sub[0].point_scores):,} points; the tables "
                     "are computed from every point.</p>")  # fmt: skip
    parts.append('<div class="grid2">' + "".join(figs.div(f) for _, f in curve_figures(sets)) + "</div>")
    parts.append("<h3>Score histograms: good vs defective samples, normal vs anomalous points</h3>")
    cells = []
    for cs in sets:
        known = thresholds_of(doc, cs.category, cs.run)
        cells += [figs.div(histogram_figure(cs, "object", known.get("object"))),
                  figs.div(histogram_figure(cs, "point", known.get("point")))]  # fmt: skip
    parts.append('<div class="grid2">' + "".join(cells) + "</div>")
    return "\n".join(parts)


def _viewer(items: Sequence[GalleryItem]) -> str:
    options = "".join(
        f'<option value="{i}">{escape(it.category + " / " if it.category else "")}{escape(it.name)}'
        f" ({escape(it.kind)})</option>" for i, it in enumerate(items))  # fmt: skip
    colours = "".join(f'<option value="{v}">{t}</option>' for v, t in (
        ("fused", "fused score"), ("aligned", "aligned branch"), ("rendering", "rendering branch"),
        ("gt", "ground truth")))  # fmt: skip
    return f"""<div id="viewer">
<div class="controls">
<label>sample <select id="v-sample">{options}</select></label>
<label>colour by <select id="v-color">{colours}</select></label>
<label><input type="checkbox" id="v-mask"> predicted mask at threshold</label>
<input type="range" id="v-thr" min="0" max="1000" value="500"> <span id="v-thr-val"></span>
<label>point size <input type="range" id="v-size" min="1" max="10" value="2"></label>
</div>
<div class="muted"><span id="v-count"></span>. <span id="v-info"></span>
Drag to orbit, scroll to zoom, right-drag to pan.</div>
<div id="v-plot"></div>
</div>"""


def _card(i: int, item: GalleryItem) -> str:
    label = {None: "unlabelled", 0: "good", 1: "defective"}[item.label]
    img = ""
    if item.views_png:
        data = base64.b64encode(item.views_png).decode("ascii")
        img = f'<img alt="views of {escape(item.name)}" src="data:image/png;base64,{data}">'
    css = "kind-" + item.kind.replace(" ", "-")
    cloud = item.cloud
    shown = (f"{cloud['shown']:,} of {cloud['total']:,} points shown" if cloud["shown"] < cloud["total"]
             else f"{cloud['total']:,} points")  # fmt: skip
    return (f'<div class="card"><h3>{escape(item.category + " / " if item.category else "")}'
            f'{escape(item.name)}</h3><span class="kind {css}">{escape(item.kind)}</span> '
            f"{label}, object score {item.object_score:.4g}; {shown} "
            f'<button data-cloud="{i}">view in 3D</button>{img}</div>')  # fmt: skip


def _gallery_section(items: Sequence[GalleryItem], doc: Mapping[str, Any]) -> tuple[str, list]:
    clouds = []
    for it in items:
        clouds.append({"name": it.name, "category": it.category, "kind": it.kind,
                       "organised": it.organised, "cloud": it.cloud,
                       "threshold": thresholds_of(doc, it.category).get("point")})  # fmt: skip
    text = ('<h2 id="gallery">Gallery</h2>\n<p class=muted>Per category: the best detection '
            "(defective, highest object score), the worst miss (defective, lowest) and the worst "
            "false alarm (good, highest); for unlabelled clouds the highest and lowest scored. The "
            "view grids show the fused point scores as a heat overlay (jet: blue low, dark red "
            "high) with the ground truth outlined in magenta.</p>\n"
            + _viewer(items) + '\n<div class="cards">'
            + "".join(_card(i, it) for i, it in enumerate(items)) + "</div>")  # fmt: skip
    return text, clouds


def _clouds_table(rows: Sequence[tuple[str, int, float]]) -> str:
    body = "".join(f"<tr><td>{escape(n)}</td><td>{p:,}</td><td>{s:.4g}</td></tr>"
                   for n, p, s in sorted(rows, key=lambda r: -r[2]))  # fmt: skip
    return ('<h2 id="clouds">Object scores</h2>\n<table><tr><th>cloud</th><th>points</th>'
            f"<th>object score</th></tr>{body}</table>")


def render_html(
    header: ReportHeader,
    *,
    doc: Mapping[str, Any] | None = None,
    curve_sets: Sequence[CurveSet] = (),
    gallery: Sequence[GalleryItem] = (),
    clouds: Sequence[tuple[str, int, float]] = (),
) -> str:
    """The report as one HTML string (see :func:`write_html_report`)."""
    from plotly.offline import get_plotlyjs

    doc = doc or {}
    figs = _Figures()
    body = [_header(header)]
    if doc.get("categories"):
        body.append(metrics_section(doc))
    if clouds:
        body.append(_clouds_table(clouds))
    if curve_sets:
        body.append(_curves_section(curve_sets, doc, figs))
    cloud_data: list = []
    if gallery:
        text, cloud_data = _gallery_section(gallery, doc)
        body.append(text)
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(header.title)}</title>", f"<style>{css}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
        *body, _script_json("a3d-figures", figs.figures), _script_json("a3d-clouds", cloud_data),
        f"<script>{script}</script>", "</body></html>",
    ])  # fmt: skip


def write_html_report(
    path: str | Path,
    header: ReportHeader,
    *,
    doc: Mapping[str, Any] | None = None,
    curve_sets: Sequence[CurveSet] = (),
    gallery: Sequence[GalleryItem] = (),
    clouds: Sequence[tuple[str, int, float]] = (),
) -> Path:
    """Write the self-contained report (atomically).

    Args:
        path: Target ``.html``.
        header: What the top says about the run.
        doc: A results document (``metrics.json``), or None (``predict``).
        curve_sets: Saved scores of the tested categories (:func:`~.curves.load_curve_sets`).
        gallery: Samples for the gallery and the 3D viewer.
        clouds: ``(name, points, object score)`` of unlabelled clouds (``predict``).

    Returns:
        ``path``.
    """
    path = Path(path)
    atomic_write_text(path, render_html(header, doc=doc, curve_sets=curve_sets, gallery=gallery,
                                        clouds=clouds))  # fmt: skip
    return path
