"""The few lines every command ends with on stdout: what was done, a compact table of the mean
metrics, the random-weights warning when it applies, and the paths (the report is in its file).

Under ``--quiet`` only the paths are printed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluate.tables import headline

#: The point-metric variants of a results document and their row labels.
POINT_VARIANTS = (
    ("foreground", "points only"),
    ("grid", "organised grid, background 0"),
    ("reference", "reference style (as published)"),
)
#: The columns of the table: (metric key, header).
COLUMNS = (("o_auroc", "O-AUROC"), ("p_auroc", "P-AUROC"), ("aupro", "AUPRO"))
#: Categories named in the table's title; more are counted.
NAMED_CATEGORIES = 3


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _categories(names: Sequence[str]) -> str:
    if len(names) <= NAMED_CATEGORIES:
        return f"{len(names)} categories ({', '.join(names)})"
    return f"{len(names)} categories"


def metrics_table(doc: Mapping[str, Any]) -> list[str]:
    """The mean O-AUROC / P-AUROC / AUPRO (x100) of a results document, one row per point variant."""
    mean = doc.get("mean", {})
    rows = [(label, headline(mean, v)) for v, label in POINT_VARIANTS if mean.get(v)]
    names = list(doc.get("categories", {}))
    title = names[0] if len(names) == 1 else f"mean of {_categories(names)}" if names else "mean"
    width = max(len(title), *(len(label) + 2 for label, _ in rows)) if rows else len(title)
    lines = [title.ljust(width) + "".join(f"  {head:>7}" for _, head in COLUMNS)]
    for label, values in rows:
        cells = "".join(f"  {_percent(values[k]):>7}" for k, _ in COLUMNS)
        lines.append(f"  {label}".ljust(width) + cells)
    return lines


def random_weights_warning(doc: Mapping[str, Any]) -> list[str]:
    """The warning line for results of a backbone with random weights (none otherwise)."""
    if not doc.get("random_weights"):
        return []
    backbone = str(doc.get("backbone") or "the backbone").split(" (")[0]
    return [f"warning: {backbone} has random weights: these numbers are not comparable with "
            "published results (pass --weights for the real backbone)"]  # fmt: skip


def finish(args: argparse.Namespace, lines: Sequence[str], paths: Sequence[tuple[str, Path]]) -> None:
    """Print ``lines`` (not under ``--quiet``), then the labelled ``paths``, the last one last."""
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line)
    width = max((len(label) for label, _ in paths), default=0) + 1
    for label, path in paths:
        print(f"{label + ':':<{width}} {path}")


def results_summary(
    args: argparse.Namespace,
    run_dir: Path,
    *,
    title: str,
    report: Path | None = None,
    doc: Mapping[str, Any] | None = None,
) -> None:
    """End a command that wrote metrics into ``run_dir``: ``title``, the table, the warning, the
    run folder and the report (default ``run_dir/metrics.md``; ``doc``: its ``metrics.json``)."""
    from ..evaluate.tables import read_results

    doc = read_results(run_dir / "metrics.json") if doc is None else doc
    lines = [title, *metrics_table(doc), *random_weights_warning(doc)]
    html = [("html", run_dir / "report.html")] if (run_dir / "report.html").exists() else []
    finish(args, lines, [("run folder", run_dir), *html, ("report", report or run_dir / "metrics.md")])


def last_epoch(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """The last epoch of a training history, rounded, e.g. ``last epoch: stage 2, epoch 2: ...``."""
    if not history:
        return []
    from ..training.stages import epoch_postfix

    record = history[-1]
    return [f"last epoch: stage {record.get('stage')}, epoch {record.get('epoch')}: "
            f"{epoch_postfix(record)}"]  # fmt: skip


def train_summary(args: argparse.Namespace, config: Any, result: Any, run_dir: Path) -> None:
    """End ``train``: what was trained, its last epoch's losses, the random-weights warning."""
    from ..model.checkpoint import read_checkpoint

    backbone = read_checkpoint(run_dir).get("backbone", {})
    lines = [f"trained {config.method.variant} on {', '.join(config.data.train_categories)}",
             *last_epoch(result.history)]  # fmt: skip
    if backbone.get("random_weights"):
        lines.append(f"warning: {backbone.get('name', 'the backbone')} has random weights: the "
                     "model's numbers will not be comparable with published results")  # fmt: skip
    finish(args, lines, [("run folder", run_dir)])
