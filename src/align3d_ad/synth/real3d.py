"""Writer of the Real3D-AD format (DATASETS.md §3), one category at a time.

``<cat>/train/<n>_template.pcd``: complete 360-degree objects. ``<cat>/test/<id>_<kind>[_cut].pcd``
with kind ``good``, ``bulge`` or ``sink``: partial single-view scans (the points facing one random
direction), sparser than the templates, in a random pose. ``<cat>/gt/<stem>.txt`` for anomalous scans:
the same points, ``x y z label`` with single spaces and 6 decimals (labels written ``0``/``1`` or
``0.000000``/``1.000000``; ``_cut`` scans list their rows shuffled). Units: millimetres. PCD
encodings alternate between ascii, binary and binary_compressed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import write_pcd
from .manifest import SynthSplit
from .shapes import draw_shape
from .streams import DEFECT, LAYOUT, OBJECT, Streams
from .surface import (
    SurfaceScan,
    apply_surface_defects,
    random_direction,
    random_rotation,
    sample_surface,
    visible_part,
)
from .writers import make_folders, write_matrix

MM_PER_M = 1000.0  # Real3D-AD coordinates look like millimetres, §3.2
TRANSLATION_MM = 20.0  # random translation of a test scan (each axis)
TEST_KINDS = {
    "bulge": ("bulge",),
    "sink": ("sink",),
    "bulge_cut": ("bulge", "cut"),
    "sink_cut": ("sink", "cut"),
}
TEMPLATE_ENCODINGS = ("ascii", "binary")
TEST_ENCODINGS = ("binary", "binary_compressed", "ascii")
MAX_TEST_ID = 1000  # test ids are distinct, non-contiguous integers below this


@dataclass(frozen=True)
class Counts:
    """Files per split and the number of surface points drawn (templates, test scans before cropping)."""

    train: int
    good: int
    per_kind: int
    template_points: int
    scan_points: int


COUNTS = {False: Counts(4, 10, 3, 8000, 5000), True: Counts(2, 2, 1, 2000, 1200)}


def make_template(category: str, count: int, rng: np.random.Generator) -> SurfaceScan:
    """A complete object (mm), turned about the vertical by a random angle."""
    shape = draw_shape(category, rng)
    surface = sample_surface(shape, count, rng)
    yaw = rng.random() * 2 * np.pi
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return SurfaceScan(surface.points @ turn.T * MM_PER_M, surface.normals @ turn.T, surface.labels)


def make_test_scan(
    category: str,
    count: int,
    kinds: tuple[str, ...],
    obj_rng: np.random.Generator,
    defect_rng: np.random.Generator,
) -> SurfaceScan:
    """A partial scan (mm, random pose) of a random instance with the surface defects ``kinds``."""
    shape = draw_shape(category, obj_rng)
    surface = sample_surface(shape, count, obj_rng)
    view = random_direction(obj_rng)
    rotation, shift = random_rotation(obj_rng), obj_rng.uniform(-TRANSLATION_MM, TRANSLATION_MM, 3)
    scan = visible_part(surface, view)
    if kinds:
        scan = apply_surface_defects(scan, kinds, view, shape.size, defect_rng)
    points = scan.points @ rotation.T * MM_PER_M + shift
    return SurfaceScan(points, scan.normals @ rotation.T, scan.labels)


def _write_gt(
    path: Path, scan: SurfaceScan, *, shuffle: np.ndarray | None, float_labels: bool
) -> None:
    table = np.column_stack([scan.points.astype(np.float32), scan.labels])
    if shuffle is not None:
        table = table[shuffle]
    label_format = "%.6f" if float_labels else "%d"
    write_matrix(path, table, f"%.6f %.6f %.6f {label_format}\n")


def write_real3d_category(
    out: Path, category: str, streams: Streams, *, small: bool, train: int | None = None
) -> dict[str, SynthSplit]:
    """Write one category as ``out/<category>/{train,test,gt}``; return its counts."""
    root = Path(out) / category
    counts = COUNTS[small] if train is None else replace(COUNTS[small], train=train)
    stats = {"train": SynthSplit(), "test": SynthSplit()}
    make_folders(root / "train", root / "test", root / "gt")
    for index in range(counts.train):
        template = make_template(category, counts.template_points, streams.rng(0, index, OBJECT))
        encoding = TEMPLATE_ENCODINGS[index % len(TEMPLATE_ENCODINGS)]
        write_pcd(
            root / "train" / f"{index + 1}_template.pcd",
            template.points.astype(np.float32),
            encoding=encoding,
        )
        stats["train"].add(0, "good")
    plan = ["good"] * counts.good + [kind for kind in TEST_KINDS for _ in range(counts.per_kind)]
    layout = streams.rng(1, 0, LAYOUT)
    ids = np.sort(layout.choice(np.arange(1, MAX_TEST_ID), size=len(plan), replace=False))
    ids = ids[layout.permutation(len(plan))]
    for index, name in enumerate(plan):
        kinds = TEST_KINDS.get(name, ())
        scan = make_test_scan(
            category,
            counts.scan_points,
            kinds,
            streams.rng(1, index, OBJECT),
            streams.rng(1, index, DEFECT),
        )
        stem = f"{ids[index]}_{name}"
        encoding = TEST_ENCODINGS[index % len(TEST_ENCODINGS)]
        write_pcd(root / "test" / f"{stem}.pcd", scan.points.astype(np.float32), encoding=encoding)
        if kinds:
            shuffle = layout.permutation(len(scan.points)) if "cut" in kinds else None
            _write_gt(
                root / "gt" / f"{stem}.txt", scan, shuffle=shuffle, float_labels=bool(index % 2)
            )
        stats["test"].add(int(bool(kinds)), name.split("_")[0], int(scan.labels.sum()))
    return stats
