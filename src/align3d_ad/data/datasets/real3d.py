"""Real3D-AD reader (DATASETS.md §3).

Layout ``<root>/<class>/{train,test,gt}``. ``train`` = every ``*.pcd`` in ``train/`` whatever its
name (README says ``prototype``, loaders glob ``template``). ``test`` = every ``*.pcd`` in ``test/``
except names containing ``temp`` (the official loaders drop them; each is recorded as skipped). A
scan is normal iff its stem contains ``good``; test stems follow ``<id>_<kind>[_cut]`` and
``defect_type`` is the kind (``good``, ``bulge``, ``sink``), ``meta["cut"]`` the flag.

Points are native (no resampling), no colours. Good scans: the PCD's points, all-False point labels
(gt files of good scans are not read, like the official loader). Anomalous scans follow the official
protocol: the gt txt ``gt/<stem>.txt`` (``x y z label``, label > 0.5 anomalous) **is** the point
set; the PCD is read to check it (the official loader never compares the two). Policy
``gt_mismatch``:

* ``"use_txt"`` (default, the official protocol): a txt with another row count than the PCD is
  recorded as a problem and the txt is used;
* ``"error"``: that case raises DatasetFormatError.

With equal counts, txt rows are matched to PCD points by nearest coordinates (row order is never
assumed); rows farther than ``gt_tolerance`` from every PCD point are recorded as a problem (five
real scans have such mismatches, §3.3) and the txt is still used. Every mismatch is a problem
(``inspect`` lists them); :meth:`~.base.DatasetReader.flush_warnings` logs them in one warning.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ...errors import ConfigError, DatasetFormatError
from ..formats import read_pcd, read_xyz_txt
from ..sample import PointCloudSample
from .base import DatasetReader, SampleRef, register_dataset

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
GT_FOLDER = "gt"
PCD_SUFFIX = ".pcd"
GT_SUFFIX = ".txt"
NORMAL_MARK = "good"  # "normal iff the path contains good" - official loader [V], §3.1
TEMPLATE_MARK = "temp"  # official loaders drop test files containing it [V], §3.1
GT_MISMATCH_POLICIES = ("use_txt", "error")
DEFAULT_GT_MISMATCH = "use_txt"  # the official loader evaluates on the txt's points [V], §3.3
#: The one warning that lists every gt txt not matching its PCD.
GT_MISMATCH_WARNING = (
    "real3d: gt txt differs from its PCD; scored on the txt's points (the official protocol; "
    "details: align3d-ad inspect)"
)
#: The command-line flag that turns the default back on after gt_mismatch: error.
USE_TXT_FLAG = "--set 'eval.reader_options={gt_mismatch: use_txt}'"
DEFAULT_GT_TOLERANCE = 0.01  # match radius (dataset units, ~mm) of a public loader, §3.3
LABEL_THRESHOLD = 0.5  # labels are parsed as floats: 0/1 or 0.000000/1.000000 [U], §3.3
_TEST_NAME = re.compile(r"^(?P<id>\d+)_(?P<kind>[A-Za-z]+)(?P<extra>(?:_[A-Za-z0-9]+)*)$")


def parse_real3d_name(stem: str) -> tuple[str | None, tuple[str, ...]]:
    """Defect kind and suffix flags of a test stem: ``"12_sink_cut"`` -> ``("sink", ("cut",))``.

    Returns ``(None, ())`` when ``stem`` does not follow ``<id>_<kind>[_flag...]``.
    """
    match = _TEST_NAME.match(stem)
    if match is None:
        return None, ()
    extra = tuple(part for part in match["extra"].split("_") if part)
    return match["kind"], extra


@register_dataset
class Real3DReader(DatasetReader):
    """Reader of the Real3D-AD PCD release.

    Sample ids are ``"<split>/<stem>"`` (``"test/11_bulge"``, ``"train/1_template"``).

    Args:
        root: Folder holding the class folders (``airplane``, ...).
        gt_mismatch: ``"use_txt"`` (default, official protocol) or ``"error"`` for a gt txt whose
            row count differs from the PCD.
        gt_tolerance: Distance beyond which a gt row counts as not found in the PCD.
    """

    name = "real3d"
    labelled_split = "test"
    layout = "<class>/{train,test}/*.pcd with gt/<stem>.txt for the anomalous test scans"
    layout_globs = ("*/train/*.pcd", "*/test/*.pcd")

    def __init__(
        self,
        root: str | Path,
        *,
        gt_mismatch: str = DEFAULT_GT_MISMATCH,
        gt_tolerance: float = DEFAULT_GT_TOLERANCE,
    ) -> None:
        if gt_mismatch not in GT_MISMATCH_POLICIES:
            raise ConfigError(
                f"gt_mismatch must be one of {list(GT_MISMATCH_POLICIES)}, got {gt_mismatch!r}"
            )
        if not gt_tolerance >= 0:
            raise ConfigError(f"gt_tolerance must be >= 0, got {gt_tolerance!r}")
        self.gt_mismatch = gt_mismatch
        self.gt_tolerance = float(gt_tolerance)
        super().__init__(root)

    def _is_category_dir(self, path: Path) -> bool:
        return any((path / split).is_dir() for split in SPLITS)

    def _find_splits(self, category: str) -> list[str]:
        return [split for split in SPLITS if (self.root / category / split).is_dir()]

    def _scan(self, category: str, split: str) -> list[SampleRef]:
        cat_dir = self.root / category
        refs = []
        for folder in self._subdirs(cat_dir / split):
            self._skip(
                folder, f"folder inside {split}/ (Real3D-AD keeps the {PCD_SUFFIX} files here)"
            )
        for path in self._files(cat_dir / split):
            if path.suffix.lower() != PCD_SUFFIX:
                self._skip(path, f"not a {PCD_SUFFIX} file")
            elif split == "test" and TEMPLATE_MARK in path.stem:
                self._skip(
                    path, f"test file named with {TEMPLATE_MARK!r} (official loaders drop it)"
                )
            elif split == "train":
                refs.append(self._ref(category, split, path, 0, "good", {"pcd": path}))
            else:
                refs.append(self._test_ref(category, path))
        if split == "test":
            self._check_gt_orphans(cat_dir, {ref.sample_id.split("/", 1)[1] for ref in refs})
        return refs

    def _ref(
        self, category: str, split: str, pcd: Path, label: int, defect: str | None, paths: dict
    ) -> SampleRef:
        return SampleRef(self.name, category, split, f"{split}/{pcd.stem}", label, defect, paths)

    def _test_ref(self, category: str, pcd: Path) -> SampleRef:
        label = 0 if NORMAL_MARK in pcd.stem else 1
        kind, _ = parse_real3d_name(pcd.stem)
        if kind is None:
            self._problem(pcd, "name must follow <id>_<kind>[_cut] (defect type unknown)")
        defect = NORMAL_MARK if label == 0 else kind
        paths = {"pcd": pcd}
        gt = self.root / category / GT_FOLDER / (pcd.stem + GT_SUFFIX)
        if gt.is_file():
            paths["gt"] = gt
        elif label == 1:
            self._problem(pcd, f"no {GT_FOLDER}/{gt.name}: anomalous scan gets no point labels")
        return self._ref(category, "test", pcd, label, defect, paths)

    def _check_gt_orphans(self, cat_dir: Path, stems: set[str]) -> None:
        gt_dir = cat_dir / GT_FOLDER
        if not gt_dir.is_dir():
            return
        for path in self._files(gt_dir):
            if path.suffix.lower() != GT_SUFFIX or path.stem not in stems:
                self._skip(path, f"no matching test/{path.stem}{PCD_SUFFIX}")

    def missing_labels(self, ref: SampleRef) -> tuple[Path, str] | None:
        """An anomalous scan without its gt txt cannot be evaluated."""
        if ref.label == 1 and "gt" not in ref.paths:
            gt = self.root / ref.category / GT_FOLDER / (Path(ref.paths["pcd"]).stem + GT_SUFFIX)
            return gt, f"file is missing: anomalous scan {ref.key} has no gt point labels"
        return super().missing_labels(ref)

    def _files_read(self, ref: SampleRef) -> list[Path]:
        """The PCD, and the gt txt of an anomalous scan (a good scan's gt is never read)."""
        keys = ("pcd", "gt") if ref.label == 1 else ("pcd",)
        return [Path(ref.paths[key]) for key in keys if key in ref.paths]

    def _load(self, ref: SampleRef) -> PointCloudSample:
        pcd_path = Path(ref.paths["pcd"])
        pcd = self._read_points(pcd_path)
        labels = np.zeros(len(pcd), dtype=bool) if ref.label == 0 else None
        points = pcd
        if ref.label == 1 and "gt" in ref.paths:
            points, labels = self._read_gt(Path(ref.paths["gt"]), pcd, pcd_path)
        _, flags = parse_real3d_name(pcd_path.stem) if ref.split == "test" else (None, ())
        return PointCloudSample.from_points(
            points,
            point_labels=labels,
            label=ref.label,
            category=ref.category,
            sample_id=ref.sample_id,
            defect_type=ref.defect_type,
            source=pcd_path,
            meta={
                "dataset": self.name,
                "split": ref.split,
                "cut": "cut" in flags,
                "paths": dict(ref.paths),
            },
        )

    @staticmethod
    def _read_points(path: Path) -> np.ndarray:
        fields = read_pcd(path)
        missing = [axis for axis in "xyz" if axis not in fields]
        if missing:
            raise DatasetFormatError(path, f"PCD must have fields x y z, got {sorted(fields)}")
        return np.stack(
            [np.asarray(fields[axis], dtype=np.float32).reshape(-1) for axis in "xyz"], 1
        )

    def _read_gt(
        self, gt_path: Path, pcd: np.ndarray, pcd_path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        """The txt's points and labels, checked against the PCD (see module docstring)."""
        points, raw = read_xyz_txt(gt_path)
        if raw is None:
            raise DatasetFormatError(gt_path, "gt must have 4 columns 'x y z label', got 3")
        labels = np.asarray(raw, dtype=np.float64).reshape(-1) > LABEL_THRESHOLD
        points = np.asarray(points, dtype=np.float32)
        if len(points) != len(pcd):
            problem = (
                f"gt must list the {len(pcd)} points of {pcd_path.name}, got {len(points)} rows"
            )
            if self.gt_mismatch == "error":
                raise DatasetFormatError(
                    gt_path,
                    f"{problem} (gt_mismatch is 'error'; to score the txt's points as the official "
                    f"loader does, pass {USE_TXT_FLAG})",
                )
            self._problem(gt_path, problem + "; using the txt points", group=GT_MISMATCH_WARNING)
            return points, labels
        far = self._unmatched(points, pcd)
        if far.size:
            self._problem(
                gt_path,
                f"{far.size} of {len(points)} gt rows lie farther than {self.gt_tolerance:g} "
                f"from every point of {pcd_path.name} (max {far.max():.4g}); using the txt points",
                group=GT_MISMATCH_WARNING,
            )
        return points, labels

    def _unmatched(self, txt: np.ndarray, pcd: np.ndarray) -> np.ndarray:
        """Distances from txt rows to their nearest PCD point, for those beyond the tolerance."""
        same_order = np.abs(txt.astype(np.float64) - pcd).max(axis=1, initial=0.0)
        if not len(txt) or same_order.max() <= self.gt_tolerance:
            return np.empty(0)
        dist, _ = cKDTree(pcd).query(txt, k=1)
        return dist[dist > self.gt_tolerance]
