"""What a reader sees in a dataset: counts, sizes, labels and problems (``align3d-ad inspect``).

:func:`inspect_dataset` loads every sample once (streaming: one sample in memory at a time) and
summarises each category and split. A sample that fails to load becomes a problem and is counted in
``skipped``; the report goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import DatasetReader, SampleRef, get_dataset
from .datasets.base import SKIPPED_PREFIX
from .sample import PointCloudSample

logger = logging.getLogger(__name__)

MAX_TEXT_PROBLEMS = 20  # problems listed by to_text(); to_dict() keeps all


@dataclass
class SplitStats:
    """Summary of one category/split (the fields of the JSON report)."""

    samples: int = 0
    normal: int = 0
    anomalous: int = 0
    unlabelled: int = 0
    defect_types: dict[str, int] = field(default_factory=dict)
    grid_sizes: dict[str, int] = field(default_factory=dict)
    points_min: int | None = None
    points_max: int | None = None
    points_total: int = 0
    anomalous_points: int = 0
    view_sum: tuple[float, float, float] = (0.0, 0.0, 0.0)  #: sum of the camera directions
    view_samples: int = 0  #: samples whose reader gave the camera's viewing direction
    from_above: int = 0  #: ... of which the camera looks from above (along -z)

    def add(self, sample: PointCloudSample) -> None:
        """Count one loaded sample."""
        direction = sample.meta.get("view_direction")
        if direction is not None:  # Eyecandies: derived from pose.txt (the up axis, issue 17)
            d = [float(v) for v in direction]
            self.view_sum = tuple(a + b for a, b in zip(self.view_sum, d))  # type: ignore[assignment]
            self.view_samples += 1
            self.from_above += int(d[2] < 0)
        self.samples += 1
        if sample.label is None:
            self.unlabelled += 1
        elif sample.label:
            self.anomalous += 1
        else:
            self.normal += 1
        if sample.defect_type is not None:
            _bump(self.defect_types, sample.defect_type)
        if sample.grid_shape is not None:
            _bump(self.grid_sizes, f"{sample.grid_shape[0]}x{sample.grid_shape[1]}")
        n = sample.num_points
        self.points_min = n if self.points_min is None else min(self.points_min, n)
        self.points_max = n if self.points_max is None else max(self.points_max, n)
        self.points_total += n
        if sample.point_labels is not None:
            self.anomalous_points += int(sample.point_labels.sum())

    def to_dict(self) -> dict:
        """JSON-able dict: samples, normal, anomalous, unlabelled, defect_types, grid_sizes,
        points {min, max, mean}, anomalous_points."""
        mean = self.points_total / self.samples if self.samples else None
        return {
            "samples": self.samples,
            "normal": self.normal,
            "anomalous": self.anomalous,
            "unlabelled": self.unlabelled,
            "defect_types": dict(sorted(self.defect_types.items())),
            "grid_sizes": dict(sorted(self.grid_sizes.items())),
            "points": {"min": self.points_min, "max": self.points_max, "mean": mean},
            "anomalous_points": self.anomalous_points,
            **({"view_direction": self.view_direction()} if self.view_samples else {}),
        }

    def view_direction(self) -> dict:
        """The camera's mean viewing direction (unit) and how many samples it sees from above
        (along -z, as the ``eyecandies`` views assume) or below."""
        norm = sum(v * v for v in self.view_sum) ** 0.5 or 1.0
        return {
            "mean": [round(v / norm, 4) for v in self.view_sum],
            "from_above": self.from_above,
            "from_below": self.view_samples - self.from_above,
        }


@dataclass
class DatasetReport:
    """Everything :func:`inspect_dataset` found.

    Attributes:
        dataset: Reader name.
        root: The folder the reader used.
        categories: ``{category: {split: SplitStats}}``.
        problems: ``(path, problem)`` for every file skipped or suspicious, in discovery order.
        skipped: Files and folders left unread plus samples that failed to load.
    """

    dataset: str
    root: Path
    categories: dict[str, dict[str, SplitStats]] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0

    def to_dict(self) -> dict:
        """The JSON report: ``{"dataset", "root", "categories", "problems", "skipped"}``."""
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "categories": {
                cat: {split: stats.to_dict() for split, stats in splits.items()}
                for cat, splits in self.categories.items()
            },
            "problems": [{"path": str(path), "problem": text} for path, text in self.problems],
            "skipped": self.skipped,
        }

    def to_text(self) -> str:
        """A human-readable table, one row per category and split, then the problems."""
        header = (
            "category",
            "split",
            "samples",
            "normal",
            "anom",
            "unlab",
            "points min/mean/max",
            "anom pts",
            "grids",
            "defect types",
        )
        rows = [header]
        for cat, splits in self.categories.items():
            for split, stats in splits.items():
                rows.append(_row(cat, split, stats))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"{self.dataset} at {self.root}"]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines += self._view_lines()
        lines.append(f"problems: {len(self.problems)}, skipped: {self.skipped}")
        for path, text in self.problems[:MAX_TEXT_PROBLEMS]:
            lines.append(f"  {path}: {text}")
        if len(self.problems) > MAX_TEXT_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - MAX_TEXT_PROBLEMS} more (see --json)")
        return "\n".join(lines)

    def _view_lines(self) -> list[str]:
        """Per category, where its camera looks (readers that know it: Eyecandies)."""
        lines = []
        for cat, splits in self.categories.items():
            total = SplitStats()
            for stats in splits.values():
                total.view_sum = tuple(a + b for a, b in zip(total.view_sum, stats.view_sum))  # type: ignore[assignment]
                total.view_samples += stats.view_samples
                total.from_above += stats.from_above
            if total.view_samples:
                view = total.view_direction()
                mean = ", ".join(f"{v:+.2f}" for v in view["mean"])
                lines.append(
                    f"{cat}: camera looks along ({mean}) on average; from above (z up) in "
                    f"{view['from_above']}/{total.view_samples} samples"
                )
        return lines


def inspect_dataset(
    name: str,
    root: str | Path,
    *,
    categories: Sequence[str] | None = None,
    on_sample: Callable[[SampleRef], None] | None = None,
    **options,
) -> DatasetReport:
    """Load every sample of a dataset and summarise it per category and split.

    Args:
        name: Reader name (see :func:`~align3d_ad.data.datasets.list_datasets`).
        root: Dataset folder.
        categories: Only these categories (default all).
        on_sample: Called after each sample (loaded or not), e.g. to advance a progress bar.
        **options: Reader options (e.g. ``image_index=4`` for Eyecandies).

    Returns:
        The report; it never raises for a sample that fails to load.

    Raises:
        DatasetFormatError: ``root`` does not have the reader's layout (no sample found).
    """
    return inspect_reader(
        get_dataset(name, root, **options), categories=categories, on_sample=on_sample
    )


def inspect_reader(
    reader: DatasetReader,
    *,
    categories: Sequence[str] | None = None,
    on_sample: Callable[[SampleRef], None] | None = None,
) -> DatasetReport:
    """:func:`inspect_dataset` for an already built reader.

    Raises:
        DatasetFormatError: the folder does not have the reader's layout (no sample found).
    """
    reader.check_layout()
    report = DatasetReport(dataset=reader.name, root=reader.root)
    failed: list[tuple[Path, str]] = []
    for cat in reader.categories() if categories is None else list(categories):
        report.categories[cat] = {}
        for split in reader.splits(cat):
            stats = report.categories[cat][split] = SplitStats()
            for ref in reader.refs(cat, split):
                try:
                    stats.add(reader.load(ref))
                except Exception as err:  # noqa: BLE001 - a report must survive any bad sample
                    logger.warning("%s: failed to load: %s", ref.key, err)
                    path = getattr(err, "path", None) or next(iter(ref.paths.values()), reader.root)
                    failed.append((Path(path), f"{SKIPPED_PREFIX}{ref.key} failed to load: {err}"))
                if on_sample is not None:
                    on_sample(ref)
    report.problems = list(reader.problems) + [p for p in failed if p not in reader.problems]
    report.skipped = len(reader.skipped) + len(failed)
    return report


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _row(cat: str, split: str, stats: SplitStats) -> tuple[str, ...]:
    mean = f"{stats.points_total / stats.samples:.0f}" if stats.samples else "-"
    points = f"{stats.points_min}/{mean}/{stats.points_max}" if stats.samples else "-"
    grids = ",".join(f"{k}:{v}" for k, v in sorted(stats.grid_sizes.items())) or "-"
    defects = ",".join(f"{k}:{v}" for k, v in sorted(stats.defect_types.items())) or "-"
    counts = (stats.samples, stats.normal, stats.anomalous, stats.unlabelled)
    return (cat, split, *map(str, counts), points, str(stats.anomalous_points), grids, defects)
