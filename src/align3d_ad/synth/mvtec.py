"""Writer of the MVTec 3D-AD format (DATASETS.md §1), one category at a time.

``<cat>/{train,validation}/good/{rgb,xyz}/NNN.{png,tiff}``, ``<cat>/test/<defect>/{rgb,xyz,gt}/...``
(``test/good/gt`` all zero), plus ``calibration/camera_parameters.json``, ``class_ids.json``,
``license.txt`` and ``readme.txt``. xyz: float32 (H, W, 3) TIFF in metres (z ~ 0.5 m), exact zeros for
missing points; rgb: 8-bit RGB PNG pixel-aligned; gt: 8-bit gray PNG whose value is the defect class
(255, 254, ... in alphabetical order of the classes, as in the real ``class_ids.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import write_tiff_xyz
from .defects import draw_defect
from .manifest import SynthSplit
from .scene import Camera, OrganisedScan, compose, draw_clean_scan, frame_pitch
from .shapes import CATEGORIES
from .streams import DEFECT, OBJECT, Streams
from .texture import shade, to_uint8, unit
from .writers import make_folders, write_json, write_png, write_text

DISTANCE = 0.5  # m, camera to supporting plane ("z of a few tenths of a metre", §1.2)
SENSOR_PIXEL = 1e-5  # m, sx = sy of the HALCON camera model written to camera_parameters.json
GRID = {False: (200, 240), True: (64, 80)}  # (H, W): non-square like the real scans
WIDE_GRID = {False: (160, 288), True: (56, 96)}  # long objects get a landscape image (rope, §1.2)
WIDE_CATEGORIES = ("rope",)
LIGHTS = np.stack([unit((0.25, -0.35, -1.0)), unit((-0.3, 0.2, -1.0))])  # key and fill light
LIGHT_POWER = np.array([0.7, 0.3])
PRINCIPAL_OFFSET = (0.37, 0.29)  # px off the image centre: no pixel ray has x or y exactly 0, so no
# valid point has a zero coordinate (BTF/M3DM drop points with any zero coordinate, DATASETS.md §1.2)
TOP_CLASS_VALUE = 255  # gt value of the first class; the next ones count down (tire: 255/254/253)
COMBINED = "combined"  # a test folder mixing two defect classes in one sample


@dataclass(frozen=True)
class Counts:
    """Samples per split folder."""

    train: int
    validation: int
    test_good: int
    per_defect: int


COUNTS = {False: Counts(16, 10, 10, 5), True: Counts(3, 1, 2, 2)}


def class_values(defects: tuple[str, ...]) -> dict[str, int]:
    """gt value of each defect class: 255, 254, ... in alphabetical order (``combined`` excluded)."""
    classes = sorted(d for d in defects if d != COMBINED)
    return {name: TOP_CLASS_VALUE - i for i, name in enumerate(classes)}


def mvtec_camera(category: str, small: bool) -> tuple[Camera, float]:
    """The category's camera (same for all its scans) and the pixel pitch at the plane."""
    grid = (WIDE_GRID if category in WIDE_CATEGORIES else GRID)[small]
    pitch = frame_pitch(category, grid)
    cx, cy = grid[1] / 2 + PRINCIPAL_OFFSET[0], grid[0] / 2 + PRINCIPAL_OFFSET[1]
    return Camera(DISTANCE / pitch, cx, cy, *grid), pitch


def render_mvtec_scan(
    category: str,
    camera: Camera,
    pitch: float,
    streams: Streams,
    split_code: int,
    index: int,
    folder: str,
) -> OrganisedScan:
    """One scan of defect folder ``folder`` (``good``, a class, or ``combined``: two classes)."""
    clean = draw_clean_scan(
        category,
        camera,
        streams.rng(split_code, index, OBJECT),
        distance=DISTANCE,
        pitch=pitch,
        dropouts=True,
    )
    rng = streams.rng(split_code, index, DEFECT)
    kinds: tuple[str, ...] = ()
    if folder == COMBINED:
        classes = sorted(class_values(CATEGORIES[category].mvtec_defects))
        kinds = tuple(str(k) for k in rng.choice(classes, size=2, replace=False))
    elif folder != "good":
        kinds = (folder,)
    return compose(clean, [draw_defect(kind, clean.context(), rng) for kind in kinds])


def mvtec_rgb(scan: OrganisedScan) -> np.ndarray:
    """8-bit RGB photo of the scan (all pixels, missing points included)."""
    return to_uint8(shade(scan.albedo, scan.normals, LIGHTS, intensities=LIGHT_POWER))


def mvtec_gt(scan: OrganisedScan, values: dict[str, int]) -> np.ndarray:
    """uint8 (H, W) gt: 0 normal, the class value of the defect elsewhere."""
    lut = np.array([0] + [values[kind] for kind in scan.kinds], dtype=np.uint8)
    return lut[scan.labels]


def _write_sample(folder: Path, stem: str, scan: OrganisedScan, gt: np.ndarray | None) -> None:
    write_tiff_xyz(folder / "xyz" / f"{stem}.tiff", scan.xyz)
    write_png(folder / "rgb" / f"{stem}.png", mvtec_rgb(scan))
    if gt is not None:
        write_png(folder / "gt" / f"{stem}.png", gt)


def _write_category_files(
    root: Path, category: str, camera: Camera, values: dict[str, int], seed: int
) -> None:
    make_folders(root / "calibration")
    write_json(
        root / "calibration" / "camera_parameters.json",
        {
            "camera_type": "area_scan_division",
            "focus": camera.focal * SENSOR_PIXEL,
            "kappa": 0.0,
            "sx": SENSOR_PIXEL,
            "sy": SENSOR_PIXEL,
            "cx": camera.cx,
            "cy": camera.cy,
            "image_width": camera.width,
            "image_height": camera.height,
        },
    )
    write_json(root / "class_ids.json", {**{str(v): k for k, v in values.items()}, "0": "good"})
    write_text(
        root / "license.txt", "Synthetic data generated by align3d-ad; free to use (CC0-1.0).\n"
    )
    write_text(
        root / "readme.txt",
        f"Synthetic '{category}' scans in the MVTec 3D-AD layout, written by align3d-ad (seed {seed}).\n"
        "xyz: float32 metres, zeros = missing points. gt: class values, see class_ids.json.\n",
    )


def mvtec_folders(
    category: str, small: bool, train: int | None = None
) -> list[tuple[str, str, int]]:
    """(split, defect folder, samples) in writing order; the position is the folder's split code
    (``train``: ``train/good`` samples instead of the size's default)."""
    counts = COUNTS[small] if train is None else replace(COUNTS[small], train=train)
    folders = [("train", "good", counts.train), ("validation", "good", counts.validation)]
    folders.append(("test", "good", counts.test_good))
    return folders + [("test", d, counts.per_defect) for d in CATEGORIES[category].mvtec_defects]


def write_mvtec_category(
    out: Path, category: str, streams: Streams, *, small: bool, train: int | None = None
) -> dict[str, SynthSplit]:
    """Write one category in the MVTec 3D-AD layout under ``out/<category>``; return its counts
    (``train``: ``train/good`` samples instead of the size's default)."""
    root = Path(out) / category
    camera, pitch = mvtec_camera(category, small)
    values = class_values(CATEGORIES[category].mvtec_defects)
    _write_category_files(root, category, camera, values, streams.seed)
    stats = {split: SynthSplit() for split in ("train", "validation", "test")}
    for split_code, (split, folder, n) in enumerate(mvtec_folders(category, small, train)):
        kinds = ("xyz", "rgb", "gt") if split == "test" else ("xyz", "rgb")
        make_folders(*(root / split / folder / kind for kind in kinds))
        for index in range(n):
            scan = render_mvtec_scan(category, camera, pitch, streams, split_code, index, folder)
            gt = mvtec_gt(scan, values) if split == "test" else None
            _write_sample(root / split / folder, f"{index:03d}", scan, gt)
            anomalous = int(((scan.labels > 0) & scan.valid).sum())
            stats[split].add(0 if folder == "good" else 1, folder, anomalous)
    return stats
