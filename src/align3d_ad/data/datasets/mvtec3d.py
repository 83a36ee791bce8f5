"""MVTec 3D-AD reader (DATASETS.md §1).

Layout ``<root>/<category>/{train,validation,test}/<defect>/{rgb,xyz,gt}/NNN.{png,tiff,png}``;
``root`` is the unpacked ``mvtec_3d_anomaly_detection/`` folder (or the folder holding it). Points
come from the organised xyz TIFF (all-zero and non-finite cells are missing points and are dropped, the
grid is kept), colours from the pixel-aligned RGB PNG, point labels from the gt PNG binarised with
``> 0`` (the gt stores defect classes as 253/254/255, DATASETS.md §1.2). ``test/good`` uses its
all-zero gt when present and zeros otherwise; ``train``/``validation`` samples are normal with
all-False point labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..formats import read_image, read_tiff_xyz
from ..sample import PointCloudSample, valid_point_mask
from .base import DatasetReader, SampleRef, as_mask, as_rgb01, register_dataset, subdirs

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")  # exact split folder names [V], DATASETS.md §1.1
NORMAL_DEFECT = "good"  # folder of normal samples in every split
XYZ_SUFFIXES = (".tiff", ".tif")  # real files use ".tiff" [V]; ".tif" tolerated
IMAGE_SUFFIX = ".png"  # rgb/ and gt/ [V]
WRAPPER_FOLDER = "mvtec_3d_anomaly_detection"  # top folder of the distributed archive [C]


@register_dataset
class MVTec3DReader(DatasetReader):
    """Reader of the MVTec 3D-AD folder layout as distributed.

    Sample ids are ``"<split>/<defect>/<stem>"`` (stems repeat across defect folders). A defect
    folder of ``test`` without gt masks keeps its samples (label 1, ``point_labels`` None) and
    records a problem; so do RGB files missing for an xyz file (colours None).

    Args:
        root: ``mvtec_3d_anomaly_detection/`` (categories are its subfolders) or its parent.
    """

    name = "mvtec3d"
    labelled_split = "test"
    layout = "<category>/{train,validation,test}/<defect>/{xyz,rgb,gt}/NNN.{tiff,png,png}"
    layout_globs = ("*/*/*/xyz", f"{WRAPPER_FOLDER}/*/*/*/xyz")

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if (root / WRAPPER_FOLDER).is_dir() and not any(map(self._is_category_dir, subdirs(root))):
            root = root / WRAPPER_FOLDER
        super().__init__(root)

    def _is_category_dir(self, path: Path) -> bool:
        return any((path / split).is_dir() for split in SPLITS)

    def _find_splits(self, category: str) -> list[str]:
        cat_dir = self.root / category
        for child in self._subdirs(cat_dir):
            if child.name not in SPLITS and child.name != "calibration":
                self._skip(child, f"not a split folder (splits are {', '.join(SPLITS)})")
        return [split for split in SPLITS if (cat_dir / split).is_dir()]

    def _scan(self, category: str, split: str) -> list[SampleRef]:
        split_dir = self.root / category / split
        for path in self._files(split_dir):
            self._skip(path, "plain file in a split folder (expected defect folders)")
        refs: list[SampleRef] = []
        for defect_dir in self._subdirs(split_dir):
            refs.extend(self._scan_defect(category, split, defect_dir))
        return refs

    def _scan_defect(self, category: str, split: str, defect_dir: Path) -> list[SampleRef]:
        defect = defect_dir.name
        label = 0 if defect == NORMAL_DEFECT else 1
        if label and split != "test":
            self._problem(defect_dir, f"{split}/ must hold only good/, got {defect}/ (labelled 1)")
        xyz = self._stems(defect_dir / "xyz", XYZ_SUFFIXES)
        if xyz is None:
            self._skip(defect_dir, "no xyz/ folder: the point clouds of this folder are missing")
            return []
        rgb = self._stems(defect_dir / "rgb", (IMAGE_SUFFIX,)) or {}
        gt = self._stems(defect_dir / "gt", (IMAGE_SUFFIX,))
        needs_gt = label == 1 and split == "test"
        if needs_gt and gt is None:
            self._problem(defect_dir, "no gt/ folder: anomalous samples get no point labels")
        refs = []
        for stem, xyz_path in xyz.items():
            paths = {"xyz": xyz_path}
            if stem in rgb:
                paths["rgb"] = rgb[stem]
            else:
                self._problem(xyz_path, f"no rgb/{stem}{IMAGE_SUFFIX}: loaded without colours")
            if gt is not None and stem in gt:
                paths["gt"] = gt[stem]
            elif needs_gt and gt is not None:
                self._problem(xyz_path, f"no gt/{stem}{IMAGE_SUFFIX}: no point labels")
            sample_id = f"{split}/{defect}/{stem}"
            refs.append(SampleRef(self.name, category, split, sample_id, label, defect, paths))
        for stem in sorted({*rgb, *(gt or {})} - set(xyz)):
            orphan = rgb.get(stem) or (gt or {})[stem]
            self._skip(orphan, f"no matching xyz/{stem}.tiff")
        return refs

    def _stems(self, folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path] | None:
        """``{stem: path}`` of the files with ``suffixes`` in ``folder``; None if no folder."""
        if not folder.is_dir():
            return None
        found = {}
        for path in self._files(folder):
            if path.suffix.lower() in suffixes:
                found[path.stem] = path
            else:
                self._skip(
                    path, f"unexpected file in {folder.name}/ (expected {'/'.join(suffixes)})"
                )
        return found

    def missing_labels(self, ref: SampleRef) -> tuple[Path, str] | None:
        """An anomalous test sample without its gt mask cannot be evaluated."""
        if ref.label == 1 and "gt" not in ref.paths:
            xyz = Path(ref.paths["xyz"])
            gt = xyz.parent.parent / "gt" / f"{xyz.stem}{IMAGE_SUFFIX}"
            return gt, f"file is missing: anomalous sample {ref.key} has no gt mask"
        return super().missing_labels(ref)

    def _load(self, ref: SampleRef) -> PointCloudSample:
        xyz_path = Path(ref.paths["xyz"])
        xyz = read_tiff_xyz(xyz_path)
        shape = xyz.shape[:2]
        colors = None
        if "rgb" in ref.paths:
            colors = as_rgb01(
                read_image(ref.paths["rgb"]), shape, path=ref.paths["rgb"], grid=xyz_path
            )
        mask = None
        if "gt" in ref.paths:
            mask = as_mask(read_image(ref.paths["gt"]), shape, path=ref.paths["gt"], grid=xyz_path)
            self._check_mask(ref, mask, xyz)
        elif ref.label == 0:
            mask = np.zeros(shape, dtype=bool)
        return PointCloudSample.from_grid(
            xyz,
            colors=colors,
            mask=mask,
            label=ref.label,
            category=ref.category,
            sample_id=ref.sample_id,
            defect_type=ref.defect_type,
            source=xyz_path,
            meta={"dataset": self.name, "split": ref.split, "paths": dict(ref.paths),
                  **({"gt_grid": mask} if mask is not None else {})},
        )

    def _check_mask(self, ref: SampleRef, mask: np.ndarray, xyz: np.ndarray) -> None:
        """Record masks that disagree with the folder label or lie wholly on missing points."""
        gt_path = ref.paths["gt"]
        if ref.label == 0 and mask.any():
            self._problem(gt_path, f"gt of a good sample has {int(mask.sum())} non-zero pixels")
        elif ref.label == 1 and not mask.any():
            self._problem(gt_path, "gt of an anomalous sample is all zero")
        elif ref.label == 1 and not (mask & valid_point_mask(xyz)).any():
            self._problem(gt_path, "every gt pixel falls on a missing point (no anomalous points)")
