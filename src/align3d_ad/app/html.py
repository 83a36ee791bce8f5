"""``report.html`` for the commands that score (demo, test, reproduce, predict): the gallery
collector handed to the scoring loop, and the page written at the end (``--no-report``: neither)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .._version import __version__
from ..viz.cloud_view import DISPLAY_CAP
from ..viz.curves import load_curve_sets
from ..viz.gallery import GalleryCollector, ViewGrid
from ..viz.html_report import REPORT_HTML, ReportHeader, write_html_report

logger = logging.getLogger(__name__)

#: Gallery samples kept per (category, kind); for unlabelled clouds (predict) per kind.
PER_KIND = 1
PREDICT_PER_KIND = 6


def wanted(args: argparse.Namespace) -> bool:
    """Whether this process writes ``report.html``: not under ``--no-report``, and under torchrun
    rank 0 only (its gallery holds the samples rank 0 scored)."""
    from .. import distributed

    return not getattr(args, "no_report", False) and distributed.is_main()


def view_grid(detector: Any) -> ViewGrid:
    """How ``detector`` renders, for the gallery's view grids."""
    encoder = detector.encoder
    return ViewGrid(encoder.preset, encoder.settings, detector.config.data, seed=detector.config.seed,
                    device=getattr(encoder, "device", None))  # fmt: skip


class ReportHook:
    """Called with each detector a command scores with; returns its ``on_prediction`` callback.

    One gallery over all of them (``reproduce`` tests several models); the last detector seen
    names the backbone in the header.
    """

    def __init__(self, *, per_kind: int = PER_KIND, cap: int = DISPLAY_CAP) -> None:
        self.per_kind, self.cap = per_kind, cap
        self.collector: GalleryCollector | None = None
        self.detector: Any = None

    def __call__(self, detector: Any) -> GalleryCollector:
        self.detector = detector
        if self.collector is None:
            self.collector = GalleryCollector(per_kind=self.per_kind, cap=self.cap,
                                              seed=detector.config.seed)  # fmt: skip
        self.collector.views = view_grid(detector)
        return self.collector


def chain(*callbacks: Any) -> Any:
    """One ``on_prediction`` callback calling each of ``callbacks`` that is not None."""
    live = [c for c in callbacks if c is not None]
    if not live:
        return None

    def call(sample: Any, pred: Any) -> None:
        for callback in live:
            callback(sample, pred)

    return call


def config_facts(config: Any) -> list[tuple[str, str]]:
    """The config summary of the header."""
    if config is None:
        return []
    views = config.render.views if isinstance(config.render.views, str) else "custom list"
    return [
        ("dataset", f"{config.data.dataset} ({config.data.root or '–'})"),
        ("trained on", ", ".join(config.data.train_categories) or "–"),
        ("method", f"{config.method.variant}, branches {config.method.branches}"),
        ("views", f"{views}, {config.render.projection}"),
        ("seed", str(config.seed)),
    ]


def run_seconds(run_dir: Path) -> float | None:
    """Seconds since the run folder's ``run.json`` was written (the command's start)."""
    info = Path(run_dir) / "run.json"
    return time.time() - info.stat().st_mtime if info.exists() else None


def _fingerprint(backbone: str) -> tuple[str, str]:
    """``"name (source; fingerprint)"`` -> (``"name (source)"``, fingerprint)."""
    head, _, rest = backbone.partition(" (")
    parts = [p.strip() for p in rest.rstrip(")").split(";")] if rest else []
    prints = [p for p in parts if "sha256" in p or p.startswith("params")]
    others = [p for p in parts if p not in prints]
    name = f"{head} ({'; '.join(others)})" if others else head
    return name, prints[0] if prints else ""


def write_report(
    run_dir: Path,
    *,
    title: str,
    doc: Mapping[str, Any] | None,
    hook: ReportHook | None,
    config: Any = None,
    facts: Sequence[tuple[str, str]] = (),
    seconds: float | None = None,
    backbone: Any = None,
    clouds: Sequence[tuple[str, int, float]] = (),
) -> Path:
    """Write ``run_dir/report.html`` from the results document, the saved scores and the gallery.

    The backbone named is ``backbone``, else the hook's last detector's, else the document's.
    """
    start = time.perf_counter()
    doc = doc or {}
    collector = hook.collector if hook is not None else None
    backbone = backbone if backbone is not None or hook is None or hook.detector is None \
        else hook.detector.backbone
    if backbone is not None:
        name, fingerprint = f"{backbone.name} ({backbone.source})", backbone.fingerprint
        random = bool(backbone.is_random)
    else:
        name, fingerprint = _fingerprint(str(doc.get("backbone", "")))
        random = bool(doc.get("random_weights"))
    header = ReportHeader(
        title=title, version=__version__, backbone=name, fingerprint=fingerprint,
        random_weights=random, facts=[*facts, *config_facts(config)],
        config_yaml=None if config is None else config.to_yaml(),
        run_seconds=run_seconds(run_dir) if seconds is None else seconds,
    )  # fmt: skip
    path = write_html_report(
        Path(run_dir) / REPORT_HTML, header, doc=doc, curve_sets=load_curve_sets(run_dir),
        gallery=collector.items() if collector is not None else (), clouds=clouds,
    )  # fmt: skip
    _link_from_markdown(Path(run_dir) / "metrics.md")
    logger.info("wrote %s (%.1f MB) in %.1f s", path, path.stat().st_size / 1e6,
                time.perf_counter() - start)  # fmt: skip
    return path


#: The line ``metrics.md`` ends with once the run has ``report.html``.
MARKDOWN_LINK = "Interactive report (curves, gallery, 3D viewer): [report.html](report.html)"


def _link_from_markdown(markdown: Path) -> None:
    """Let the Markdown results link to the HTML report (once)."""
    if markdown.exists():
        text = markdown.read_text(encoding="utf-8")
        if MARKDOWN_LINK not in text:
            atomic_write_text(markdown, text.rstrip("\n") + "\n\n" + MARKDOWN_LINK + "\n")


def predicted_clouds(run_dir: Path) -> list[tuple[str, int, float]]:
    """``(name, points, object score)`` of the scored clouds in ``object_scores.csv``."""
    import csv

    from .inputs import SCORES_CSV

    with (Path(run_dir) / SCORES_CSV).open(encoding="utf-8", newline="") as fh:
        return [(r["name"], int(r["points"]), float(r["object_score"]))
                for r in csv.DictReader(fh) if r["status"] == "ok"]  # fmt: skip
