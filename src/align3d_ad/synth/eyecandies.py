"""Writer of the Eyecandies format (DATASETS.md §2), one category at a time.

``<Cat>/<split>/data/<id>_<item>.<ext>`` Pipelime underfolders, ids zero-padded to the digits of
(N - 1). Train/val/test_public samples have the 17 items (six lighting images, 16-bit depth with
``info_depth.yaml``, normals, pose, obj_params, metadata and five masks); test_private samples the 10
public ones. Geometry follows the constant intrinsics f = 711.11 px at (W/2, H/2): decoding the depth
and back-projecting gives the scan's points up to the 16-bit quantisation; ``pose.txt`` is
camera-to-world with the world frame on the conveyor plane (z up). No point is missing (rendered).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .defects import draw_defect
from .manifest import SynthSplit
from .scene import Camera, OrganisedScan, compose, draw_clean_scan, frame_pitch
from .streams import DEFECT, LAYOUT, OBJECT, Streams
from .texture import shade, to_uint8, unit
from .writers import make_folders, write_matrix, write_png, write_yaml

FOCAL_PX = 711.11  # constant Eyecandies focal length [V], DATASETS.md §2.4
DEPTH_MAX_RAW = 65535  # depth PNG spans the full uint16 range, §2.3
DEPTH_MARGIN = 1e-3  # m, slack around the depth range written to info_depth.yaml
GRID = {False: 256, True: 64}  # square images like the real 512 x 512
ANOMALY_TYPES = {"bumps": "bump", "dents": "dent", "colors": "contamination", "normals": "normals"}
COMBINED_EVERY = 3  # every third bad sample gets a second anomaly type
SPOTS = np.stack([unit((0, 0.9, -1)), unit((0.9, 0, -1)), unit((0, -0.9, -1)), unit((-0.9, 0, -1))])
# image_1..image_4: bottom, right, top, left spotlight; image_0 all four; image_5 global light, §2.2
GLOBAL_LIGHT = unit((0, 0, -1))
NORMAL_FLIP = np.array([1.0, -1.0, -1.0])  # stored normals have Y and Z flipped, §2.4
SPLITS = ("train", "val", "test_public", "test_private")
PRIVATE_ITEMS = 10  # items of a test_private sample


@dataclass(frozen=True)
class Counts:
    """Good and bad samples per split."""

    train: int
    val: int
    public: tuple[int, int]
    private: tuple[int, int]


COUNTS = {False: Counts(16, 10, (10, 10), (5, 5)), True: Counts(3, 1, (2, 4), (1, 1))}


def eyecandies_camera(category: str, small: bool) -> tuple[Camera, float, float]:
    """The category's camera, the pixel pitch at the plane and the camera distance."""
    side = GRID[small]
    pitch = frame_pitch(category, (side, side))
    return Camera(FOCAL_PX, side / 2, side / 2, side, side), pitch, FOCAL_PX * pitch


def bad_types(bad_index: int) -> tuple[str, ...]:
    """Anomaly types of the ``bad_index``-th bad sample: cycles through the four, some combined."""
    names = list(ANOMALY_TYPES)
    first = names[bad_index % len(names)]
    if bad_index % COMBINED_EVERY == COMBINED_EVERY - 1:
        return first, names[(bad_index + 1) % len(names)]
    return (first,)


def render_eyecandies_scan(
    category: str,
    small: bool,
    streams: Streams,
    split_code: int,
    index: int,
    types: tuple[str, ...],
) -> OrganisedScan:
    """One rendered scan with the anomaly ``types`` (Eyecandies names)."""
    camera, pitch, distance = eyecandies_camera(category, small)
    clean = draw_clean_scan(
        category,
        camera,
        streams.rng(split_code, index, OBJECT),
        distance=distance,
        pitch=pitch,
        dropouts=False,
    )
    rng = streams.rng(split_code, index, DEFECT)
    return compose(clean, [draw_defect(ANOMALY_TYPES[t], clean.context(), rng) for t in types])


def encode_depth(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint16 depth image and the (min, max) metres it is normalised to."""
    lo = float(np.floor((depth.min() - DEPTH_MARGIN) * 1e4) / 1e4)
    hi = float(np.ceil((depth.max() + DEPTH_MARGIN) * 1e4) / 1e4)
    raw = np.round((depth - lo) / (hi - lo) * DEPTH_MAX_RAW)
    return np.clip(raw, 0, DEPTH_MAX_RAW).astype(np.uint16), lo, hi


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """8-bit normals image: camera-frame normals with Y, Z flipped, mapped by (n + 1) * 127.5."""
    return np.round(np.clip((normals * NORMAL_FLIP + 1.0) * 127.5, 0, 255)).astype(np.uint8)


def lit_images(scan: OrganisedScan) -> list[np.ndarray]:
    """image_0 .. image_5 (8-bit RGB) under the six lighting set-ups."""
    images = [shade(scan.albedo, scan.normals, SPOTS, intensities=np.full(4, 0.35))]
    images += [
        shade(scan.albedo, scan.normals, spot[None], intensities=np.ones(1)) for spot in SPOTS
    ]
    images.append(
        shade(
            scan.albedo,
            scan.normals,
            GLOBAL_LIGHT[None],
            intensities=np.ones(1) * 0.8,
            ambient=0.45,
        )
    )
    return [to_uint8(image) for image in images]


def _write_sample(
    data: Path, sid: str, scan: OrganisedScan, types: tuple[str, ...] | None, params: dict
) -> None:
    """The files of one sample; ``types`` None writes only the public (test_private) items."""
    for k, image in enumerate(lit_images(scan)):
        write_png(data / f"{sid}_image_{k}.png", image)
    raw, lo, hi = encode_depth(scan.depth)
    write_png(data / f"{sid}_depth.png", raw)
    write_yaml(data / f"{sid}_info_depth.yaml", {"normalization": {"max": hi, "min": lo}})
    write_png(data / f"{sid}_normals.png", encode_normals(scan.normals))
    write_matrix(data / f"{sid}_pose.txt", scan.camera_to_world, "%.9f %.9f %.9f %.9f\n")
    if types is None:
        return
    write_yaml(data / f"{sid}_obj_params.yaml", params)
    write_yaml(data / f"{sid}_metadata.yaml", {"anomalous": int(bool(types))})
    empty = np.zeros(scan.labels.shape, dtype=bool)
    for name, kind in ANOMALY_TYPES.items():
        regions = [region for region, applied in zip(scan.regions, scan.kinds) if applied == kind]
        mask = np.logical_or.reduce(regions) if regions else empty
        write_png(data / f"{sid}_{name}_mask.png", mask.astype(np.uint8) * 255)
    write_png(data / f"{sid}_mask.png", (scan.labels > 0).astype(np.uint8) * 255)


def write_eyecandies_category(
    out: Path, category: str, folder: str, streams: Streams, *, small: bool, train: int | None = None
) -> dict[str, SynthSplit]:
    """Write one category as ``out/<folder>/<split>/data``; return its counts."""
    counts = COUNTS[small] if train is None else replace(COUNTS[small], train=train)
    plan = {"train": (counts.train, 0), "val": (counts.val, 0), "test_public": counts.public}
    plan["test_private"] = counts.private
    stats = {}
    for split_code, split in enumerate(SPLITS):
        good, bad = plan[split]
        total = good + bad
        order = streams.rng(split_code, 0, LAYOUT).permutation(total)
        width = len(str(max(total - 1, 0)))
        data = Path(out) / folder / split / "data"
        make_folders(data)
        stats[split] = SynthSplit()
        for index in range(total):
            types = bad_types(int(order[index])) if order[index] < bad else ()
            scan = render_eyecandies_scan(category, small, streams, split_code, index, types)
            params = {
                "category": folder,
                "split": split,
                "index": index,
                "generator": "align3d-ad synth",
            }
            labelled = split != "test_private"
            _write_sample(data, f"{index:0{width}d}", scan, types if labelled else None, params)
            if not labelled:
                stats[split].add(None, None)
            else:
                stats[split].add(
                    int(bool(types)), "bad" if types else "good", int((scan.labels > 0).sum())
                )
    return stats
