"""Tiny datasets written in the exact on-disk formats of DATASETS.md §6.

Each builder writes with the libraries the real data needs (tifffile, Pillow, plain text) and
independently of ``align3d_ad.data.io``, and returns what it wrote so tests can compare.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

H, W = 12, 16  # non-square on purpose (DATASETS.md §6)

# ---------------------------------------------------------------------------------- MVTec 3D-AD
MVTEC_CATEGORY = "bagel"
MVTEC_MISSING = [(0, 0), (11, 15), (5, 6), (7, 10)]  # (5, 6) in the crack blob, (7, 10) in the hole


@dataclass
class Written:
    """What a builder wrote: the root and, per sample id, the arrays and labels."""

    root: Path
    samples: dict[str, dict] = field(default_factory=dict)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def mvtec_xyz(missing=MVTEC_MISSING, nan=()) -> np.ndarray:
    """x = (col - 7.5) 0.5 mm, y = (row - 5.5) 0.5 mm, z 0.50 m (object 0.49 m); holes are zeros."""
    r, c = np.indices((H, W))
    xyz = np.stack([(c - 7.5) * 0.0005, (r - 5.5) * 0.0005, np.full((H, W), 0.5)], -1)
    xyz[3:9, 4:12, 2] = 0.49
    xyz = xyz.astype(np.float32)
    for i, j in missing:
        xyz[i, j] = 0.0
    for i, j in nan:
        xyz[i, j] = np.nan
    return xyz


def mvtec_rgb() -> np.ndarray:
    """Pixel (r, c) has colour (10 r, 10 c, 77): reveals any transpose or shift."""
    r, c = np.indices((H, W))
    return np.stack([r * 10, c * 10, np.full((H, W), 77)], -1).astype(np.uint8)


def mvtec_gt(defect: str) -> np.ndarray:
    gt = np.zeros((H, W), dtype=np.uint8)
    if defect == "crack":
        gt[4:7, 5:8] = 255
    elif defect == "hole":
        gt[6:9, 9:12] = 254
    elif defect == "combined":
        gt[3:5, 4:6] = 255
        gt[7:9, 12:14] = 253
        gt[1, 1] = gt[2, 2] = 255  # touching diagonally only
    return gt


def write_mvtec3d(root: Path) -> Written:
    cat = root / MVTEC_CATEGORY
    (cat / "calibration").mkdir(parents=True)
    camera = {"camera_type": "area_scan_division", "focus": 0.008, "kappa": 0.0, "sx": 5e-6,
              "sy": 5e-6, "cx": 8.0, "cy": 6.0, "image_width": W, "image_height": H}  # fmt: skip
    (cat / "calibration" / "camera_parameters.json").write_text(json.dumps(camera))
    (cat / "class_ids.json").write_text(json.dumps({"255": "crack", "254": "hole", "0": "good"}))
    (cat / "readme.txt").write_text("tiny MVTec 3D-AD fixture\n")
    (cat / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    plan = [
        ("train", "good", "000", {}),
        ("train", "good", "001", {}),
        ("validation", "good", "000", {"nan": [(0, 15), (6, 3)]}),
        ("test", "good", "000", {}),
        ("test", "crack", "000", {}),
        ("test", "hole", "000", {"missing": [*MVTEC_MISSING, (8, 11)]}),
        ("test", "combined", "000", {}),
    ]
    written = Written(root)
    for split, defect, stem, opts in plan:
        folder = cat / split / defect
        xyz = mvtec_xyz(opts.get("missing", MVTEC_MISSING), opts.get("nan", ()))
        (folder / "xyz").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "xyz" / f"{stem}.tiff", xyz, photometric="rgb")
        write_png(folder / "rgb" / f"{stem}.png", mvtec_rgb())
        gt = mvtec_gt(defect) if split == "test" else None
        if gt is not None:
            write_png(folder / "gt" / f"{stem}.png", gt)
        written.samples[f"{split}/{defect}/{stem}"] = {
            "xyz": xyz, "rgb": mvtec_rgb(), "gt": gt, "label": int(defect != "good"),
            "defect": defect, "missing": len(opts.get("missing", MVTEC_MISSING)) + len(opts.get("nan", ())),
        }  # fmt: skip
    return written


# ---------------------------------------------------------------------------------- Eyecandies
EYEC_CATEGORY = "CandyCane"
EYEC_MIN, EYEC_MAX = 0.85, 0.95
EYEC_IDS = {
    "train": ["000", "001", "002"],
    "val": ["00"],
    "test_public": ["00", "01", "02", "03"],
    "test_private": ["000"],
}
EYEC_TRANSLATED = ("train", "001")  # pose = +0.1 m along x
EYEC_BAD = {"02": {"dents": (slice(1, 3), slice(1, 4)), "colors": (slice(8, 10), slice(2, 5))},
            "03": {"bumps": (slice(7, 10), slice(10, 13))}}  # fmt: skip


def eyecandies_depth() -> np.ndarray:
    """Metric depth 0.90 m everywhere, a 3x3 bump at 0.88 m (rows 7-9, cols 10-12)."""
    d = np.full((H, W), 0.90)
    d[7:10, 10:13] = 0.88
    return d


def eyecandies_raw(depth: np.ndarray) -> np.ndarray:
    return np.round((depth - EYEC_MIN) / (EYEC_MAX - EYEC_MIN) * 65535).astype(np.uint16)


def eyecandies_image(k: int) -> np.ndarray:
    """image_k pixel (r, c) = (10 r, 10 c, 40 k)."""
    r, c = np.indices((H, W))
    return np.stack([r * 10, c * 10, np.full((H, W), 40 * k)], -1).astype(np.uint8)


def write_eyecandies(root: Path) -> Written:
    written = Written(root)
    for split, ids in EYEC_IDS.items():
        data = root / EYEC_CATEGORY / split / "data"
        data.mkdir(parents=True)
        for sid in ids:
            pose = np.eye(4)
            if (split, sid) == EYEC_TRANSLATED:
                pose[0, 3] = 0.1
            _write_eyecandies_common(data, sid, pose)
            entry = {"pose": pose, "label": None, "mask": None}
            if split != "test_private":
                entry.update(
                    _write_eyecandies_labels(
                        data, sid, EYEC_BAD.get(sid) if split == "test_public" else None
                    )
                )
            written.samples[f"{split}/{sid}"] = entry
    return written


def _write_eyecandies_common(data: Path, sid: str, pose: np.ndarray) -> None:
    for k in range(6):
        write_png(data / f"{sid}_image_{k}.png", eyecandies_image(k))
    write_png(data / f"{sid}_depth.png", eyecandies_raw(eyecandies_depth()))
    (data / f"{sid}_info_depth.yaml").write_text(
        f"normalization:\n  min: {EYEC_MIN:.2f}\n  max: {EYEC_MAX:.2f}\n"
    )
    normals = np.round((np.array([0.0, 0.0, -1.0]) + 1) * 127.5).astype(np.uint8)
    write_png(data / f"{sid}_normals.png", np.broadcast_to(normals, (H, W, 3)).copy())
    np.savetxt(data / f"{sid}_pose.txt", pose, fmt="%.8f")


def _write_eyecandies_labels(data: Path, sid: str, blobs: dict | None) -> dict:
    (data / f"{sid}_obj_params.yaml").write_text("color: red\nscale: 1.0\n")
    (data / f"{sid}_metadata.yaml").write_text(f"anomalous: {int(bool(blobs))}\n")
    union = np.zeros((H, W), dtype=np.uint8)
    for kind in ("bumps", "dents", "colors", "normals"):
        mask = np.zeros((H, W), dtype=np.uint8)
        if blobs and kind in blobs:
            mask[blobs[kind]] = 255
        union |= mask
        write_png(data / f"{sid}_{kind}_mask.png", mask)
    write_png(data / f"{sid}_mask.png", union)
    return {"label": int(bool(blobs)), "mask": union > 0, "kinds": sorted(blobs or {})}


# ---------------------------------------------------------------------------------- Real3D-AD
REAL3D_CATEGORY = "airplane"
REAL3D_SHIFT = np.array([5.0, -3.0, 2.0])


def sphere(n: int, radius: float = 15.0) -> np.ndarray:
    """Fibonacci sphere of ``n`` points."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    rho = np.sqrt(1 - z**2)
    return radius * np.stack([rho * np.cos(phi), rho * np.sin(phi), z], 1)


def hemisphere_scan(n: int, angle_deg: float) -> np.ndarray:
    """Upper half of a 2n-point sphere, rotated about z and shifted by REAL3D_SHIFT."""
    pts = sphere(2 * n)
    pts = pts[pts[:, 2] > 0]
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return pts @ rot.T + REAL3D_SHIFT


def write_pcd(path: Path, points: np.ndarray, encoding: str) -> None:
    """PCD v0.7 with FIELDS x y z, float32 (header as in DATASETS.md §6.3)."""
    n = len(points)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
        f"TYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
        f"DATA {encoding}\n"
    )
    if encoding == "ascii":
        body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in points).encode()
    else:
        body = points.astype("<f4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + body)


def write_gt_txt(path: Path, points: np.ndarray, labels: np.ndarray, *, float_labels: bool) -> None:
    fmt = "{:.6f}" if float_labels else "{:d}"
    lines = [f"{x:.6f} {y:.6f} {z:.6f} {fmt.format(float(v) if float_labels else int(v))}"
             for (x, y, z), v in zip(points, labels)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_real3d(root: Path) -> Written:
    cat = root / REAL3D_CATEGORY
    written = Written(root)
    for stem, encoding in (("1_prototype", "ascii"), ("2_template", "binary")):
        pts = np.round(sphere(400), 6)
        write_pcd(cat / "train" / f"{stem}.pcd", pts, encoding)
        written.samples[f"train/{stem}"] = {"points": pts.astype(np.float32), "label": 0}
    good = np.round(hemisphere_scan(160, 30), 6)
    write_pcd(cat / "test" / "10_good.pcd", good, "ascii")
    written.samples["test/10_good"] = {"points": good.astype(np.float32), "label": 0}
    for stem, n, push, encoding, shuffle in (
        ("11_bulge", 180, 1.5, "binary", False),
        ("12_sink_cut", 170, -1.5, "ascii", True),
    ):
        pts = hemisphere_scan(n, -20)
        centred = pts - REAL3D_SHIFT
        top = np.argsort(-centred[:, 2])[:12]  # the 12 points nearest the pole
        labels = np.zeros(len(pts), dtype=bool)
        labels[top] = True
        pts[top] = REAL3D_SHIFT + centred[top] * (1 + push / 15.0)
        pts = np.round(pts, 6)
        write_pcd(cat / "test" / f"{stem}.pcd", pts, encoding)
        order = np.random.default_rng(0).permutation(len(pts)) if shuffle else np.arange(len(pts))
        write_gt_txt(cat / "gt" / f"{stem}.txt", pts[order], labels[order], float_labels=shuffle)
        written.samples[f"test/{stem}"] = {
            "points": pts.astype(np.float32), "labels": labels, "order": order, "label": 1,
        }  # fmt: skip
    return written


# ---------------------------------------------------------------------------------- plain folder
def write_folder(root: Path) -> Written:
    scans = root / "scans"
    written = Written(scans)
    pts = np.round(sphere(50, 2.0), 6)
    write_pcd(scans / "a" / "p1.pcd", pts, "ascii")
    write_pcd(scans / "a" / "p10.pcd", pts[:20], "binary")
    np.save(scans / "a" / "p2.npy", pts[:30].astype(np.float32))
    write_gt_txt(scans / "b" / "x.xyz", pts[:10], np.ones(10, bool), float_labels=False)
    (scans / "notes.md").write_text("not a cloud\n")
    write_pcd(scans / ".cache" / "hidden.pcd", pts, "ascii")
    written.samples = {"a/p1.pcd": 50, "a/p2.npy": 30, "a/p10.pcd": 20, "b/x.xyz": 10}
    return written


def _copied(factory, builder, name: str, dest: Path) -> Written:
    """Build the fixture once per session, then give each test its own copy to modify."""
    cache = _BUILT.get(name)
    if cache is None:
        cache = _BUILT[name] = builder(factory.mktemp(f"{name}_template") / name)
    shutil.copytree(cache.root.parent, dest)
    return Written(dest / cache.root.relative_to(cache.root.parent), cache.samples)


_BUILT: dict[str, Written] = {}


@pytest.fixture
def mvtec3d_tiny(tmp_path_factory, tmp_path: Path) -> Written:
    return _copied(tmp_path_factory, write_mvtec3d, "mvtec_3d_anomaly_detection", tmp_path / "d")


@pytest.fixture
def eyecandies_tiny(tmp_path_factory, tmp_path: Path) -> Written:
    return _copied(tmp_path_factory, write_eyecandies, "eyecandies_tiny", tmp_path / "d")


@pytest.fixture
def real3d_tiny(tmp_path_factory, tmp_path: Path) -> Written:
    return _copied(tmp_path_factory, write_real3d, "real3d_tiny", tmp_path / "d")


@pytest.fixture
def folder_tiny(tmp_path_factory, tmp_path: Path) -> Written:
    return _copied(tmp_path_factory, write_folder, "folder", tmp_path / "d")
