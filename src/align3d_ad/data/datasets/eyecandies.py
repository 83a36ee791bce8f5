"""Eyecandies reader (DATASETS.md §2).

Layout ``<root>/<Category>/<split>/data/<id>_<item>.<ext>`` (Pipelime "underfolders"): the file name
is split at the **first** underscore into an integer id (zero-padding varies per split) and an item
key (text up to the first dot), e.g. ``000_info_depth.yaml`` -> (0, ``info_depth``).

Geometry: the 16-bit ``depth`` PNG is decoded with ``info_depth.yaml``'s ``normalization`` min/max
(metres) and back-projected with the constant intrinsics every loader uses (f = 711.11 px,
principal point (W/2, H/2), no half-pixel offset). ``pose="world"`` (default) then applies the
official ``depth2pc`` convention, ``pose.txt`` being camera-to-world: p_world = pose @ [X, Y, Z, 1].
``pose="camera"`` keeps the camera frame. (M3DM/CPMF apply the inverse pose; both are rigid
transforms of the same cloud.) The cloud stays organised (grid H x W).

Up axis: the ``eyecandies`` views assume the world z axis points up, i.e. that the camera looks at
the object from above (along about ``-z``); nothing in the dataset states it. The reader derives the
camera's viewing direction from ``pose.txt`` (camera +z, the depth2pc convention, rotated by the
pose; +z itself in the camera frame) and stores it in ``meta["view_direction"]``; ``inspect``
reports it per category and rendering refuses views that would see the scan from behind
(:func:`align3d_ad.render.facing.check_facing`). ``up="-z"`` turns every cloud 180 degrees about x
(z down becomes z up), ``up="auto"`` turns exactly those whose camera looks from below.

Colours: ``image_<image_index>``; the default 5 (global lighting) is what the official anomalib
conversion uses; M3DM uses 4 (left spotlight) - pass ``image_index=4`` to match it.

Labels: ``metadata.yaml``'s ``anomalous`` gives the label, ``mask.png > 0`` the point labels; when
they disagree the label follows the metadata and a problem is recorded. A split without any
metadata (``test_private``) is unlabelled: label and point labels are None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...errors import ConfigError, DatasetFormatError
from ..formats import read_image
from ..sample import PointCloudSample
from .base import DatasetReader, SampleRef, as_mask, as_rgb01, register_dataset, subdirs

logger = logging.getLogger(__name__)

FOCAL_PX = 711.11  # constant focal length of every Eyecandies render [V], DATASETS.md §2.4
DEPTH_MAX_RAW = 65535.0  # depth PNG is normalised to the full uint16 range [V], §2.3
SPLITS = ("train", "val", "test_public", "test_private")  # official split names [V], §2.1
NORMAL_SPLITS = ("train", "val")  # splits with good samples only [V], §2.1
NUM_IMAGES = 6  # image_0 .. image_5, §2.2
DEFAULT_IMAGE_INDEX = 5  # global lighting; the official anomalib conversion's choice, §2.5
POSE_MODES = ("world", "camera")
UP_MODES = ("z", "-z", "auto")  #: the world's up axis, or "auto": turned per sample (module doc)
#: 180 degrees about x: turns a cloud whose camera looks from below (+z) into one seen from above.
TURN_UP = np.diag([1.0, -1.0, -1.0])
MASK_KINDS = ("bumps", "dents", "colors", "normals")  # the four per-type masks, §2.2
ITEM_SUFFIX = {"info_depth": "yaml", "metadata": "yaml", "obj_params": "yaml", "pose": "txt"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def decode_eyecandies_depth(raw: np.ndarray, d_min: float, d_max: float) -> np.ndarray:
    """Metric depth (metres) of a 16-bit Eyecandies depth image.

    Args:
        raw: uint16 (H, W) depth PNG values.
        d_min: ``normalization.min`` of ``info_depth.yaml``.
        d_max: ``normalization.max``.

    Returns:
        float32 (H, W): raw / 65535 * (max - min) + min, computed in float64.
    """
    return (np.asarray(raw, dtype=np.float64) / DEPTH_MAX_RAW * (d_max - d_min) + d_min).astype(
        np.float32
    )


def eyecandies_depth_to_points(
    depth: np.ndarray, *, pose: np.ndarray | None = None, focal: float = FOCAL_PX
) -> np.ndarray:
    """Back-project a depth map to an organised cloud.

    Pixel (row v, column u) with depth d maps to X = (u - W/2) d / f, Y = (v - H/2) d / f, Z = d in
    the camera frame; with ``pose`` (4, 4) camera-to-world the result is pose @ [X, Y, Z, 1].

    Args:
        depth: (H, W) metric depth; cells with d <= 0 or not finite become NaN (missing).
        pose: Optional (4, 4) camera-to-world matrix.
        focal: Focal length in pixels.

    Returns:
        float32 (H, W, 3).
    """
    d = np.asarray(depth, dtype=np.float64)
    h, w = d.shape
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    v, u = np.indices((h, w), dtype=np.float64)
    xyz = np.stack([(u - w / 2) * d / focal, (v - h / 2) * d / focal, d], axis=-1)
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64)
        xyz = xyz @ pose[:3, :3].T + pose[:3, 3]
    return xyz.astype(np.float32)


def camera_direction(pose: np.ndarray | None) -> np.ndarray:
    """Unit viewing direction of the camera in the frame of the points (camera frame: +z).

    The camera looks along its +z (X right, Y down, Z = depth, as :func:`eyecandies_depth_to_points`
    back-projects); ``pose`` (4, 4) camera-to-world rotates that into the world frame.
    """
    forward = np.array([0.0, 0.0, 1.0])
    if pose is None:
        return forward
    d = np.asarray(pose, dtype=np.float64)[:3, :3] @ forward
    return d / np.linalg.norm(d)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; raise DatasetFormatError naming it when it cannot be read."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetFormatError(path, f"file must be readable YAML, got {err}") from err


@register_dataset
class EyecandiesReader(DatasetReader):
    """Reader of the raw Eyecandies underfolders.

    Sample ids are ``"<split>/<id as written>"`` (``"test_public/03"``); ``defect_type`` is
    ``"good"``/``"bad"`` (None unlabelled) and ``meta["anomaly_types"]`` lists the non-empty
    per-type masks (``bumps``, ``dents``, ``colors``, ``normals``).

    Args:
        root: Folder holding the category folders (``CandyCane``, ...).
        image_index: Which ``image_<k>`` gives the colours (0..5, default 5).
        pose: ``"world"`` applies ``pose.txt`` (camera-to-world, official ``depth2pc``);
            ``"camera"`` keeps camera coordinates.
        up: ``"z"`` (default) keeps the frame; ``"-z"`` turns every cloud 180 degrees about x;
            ``"auto"`` turns those whose camera looks from below (along +z). See the module doc.
    """

    name = "eyecandies"
    labelled_split = "test_public"
    layout = "<Category>/<split>/data/<id>_<item>.<ext>"
    layout_globs = ("*/*/data", "*/*/*/data")

    def __init__(
        self,
        root: str | Path,
        *,
        image_index: int = DEFAULT_IMAGE_INDEX,
        pose: str = "world",
        up: str = "z",
    ) -> None:
        if isinstance(image_index, bool) or image_index not in range(NUM_IMAGES):
            raise ConfigError(f"image_index must be an integer in 0..5, got {image_index!r}")
        if pose not in POSE_MODES:
            raise ConfigError(f"pose must be one of {list(POSE_MODES)}, got {pose!r}")
        if up not in UP_MODES:
            raise ConfigError(f"up must be one of {list(UP_MODES)}, got {up!r}")
        self.up = up
        self.image_index = int(image_index)
        self.pose = pose
        self._cat_dirs: dict[str, Path] = {}
        self._labelled: dict[tuple[str, str], bool] = {}
        super().__init__(root)

    def _is_category_dir(self, path: Path) -> bool:
        return any((child / "data").is_dir() for child in subdirs(path))

    def _find_categories(self) -> list[str]:
        for child in self._subdirs(self.root):
            inner = subdirs(child)
            if self._is_category_dir(child):
                self._cat_dirs[child.name] = child
            elif len(inner) == 1 and self._is_category_dir(inner[0]):
                self._cat_dirs[child.name] = inner[0]  # extra top folder of a manual extraction
            else:
                self._skip(child, "not an Eyecandies category folder (no <split>/data/ inside)")
        return sorted(self._cat_dirs)

    def _find_splits(self, category: str) -> list[str]:
        found = []
        for child in self._subdirs(self._cat_dirs[category]):
            if (child / "data").is_dir():
                found.append(child.name)
            else:
                self._skip(child, "not a split folder (no data/ inside)")
        known = [split for split in SPLITS if split in found]
        return known + sorted(set(found) - set(known))

    def _scan(self, category: str, split: str) -> list[SampleRef]:
        groups, prefixes = self._group_items(self._cat_dirs[category] / split / "data")
        labelled = any("metadata" in items for items in groups.values())
        self._labelled[(category, split)] = labelled
        refs = []
        for sid in sorted(groups):
            items = groups[sid]
            label = None
            if labelled:
                label = 0 if split in NORMAL_SPLITS else self._scan_label(items)
            defect = None if label is None else ("good" if label == 0 else "bad")
            sample_id = f"{split}/{prefixes[sid]}"
            refs.append(SampleRef(self.name, category, split, sample_id, label, defect, items))
        return refs

    def _group_items(self, data_dir: Path) -> tuple[dict[int, dict[str, Path]], dict[int, str]]:
        """``{id: {item: path}}`` and ``{id: id as written}`` of the files in ``data_dir``."""
        groups: dict[int, dict[str, Path]] = {}
        prefixes: dict[int, str] = {}
        for path in self._files(data_dir):
            head, sep, rest = path.name.partition("_")
            key = rest.split(".", 1)[0]
            if not (sep and head.isdigit() and key and "." in rest):
                self._skip(path, "file name must be <id>_<item>.<ext> with an integer id")
                continue
            items = groups.setdefault(int(head), {})
            written = prefixes.setdefault(int(head), head)
            if key in items:
                self._skip(
                    path, f"duplicate item {key!r} of id {int(head)} (kept {items[key].name})"
                )
                continue
            if written != head:
                self._problem(path, f"id written {head!r} here but {written!r} elsewhere")
            items[key] = path
        return groups, prefixes

    def _scan_label(self, items: dict[str, Path]) -> int | None:
        if "metadata" not in items:
            return None
        try:
            return self._read_label(items["metadata"])
        except DatasetFormatError as err:
            self._problem(err.path, err.problem)
            return None

    def _load(self, ref: SampleRef) -> PointCloudSample:
        labelled = self._is_labelled(ref)
        paths = self._required(ref, labelled)
        depth_path = paths["depth"]
        depth = self._read_depth(depth_path, paths["info_depth"])
        pose = self._read_pose(paths["pose"])
        xyz = eyecandies_depth_to_points(depth, pose=pose if self.pose == "world" else None)
        direction = camera_direction(pose if self.pose == "world" else None)
        turned = self.up == "-z" or (self.up == "auto" and direction[2] > 0)
        if turned:  # TURN_UP is its own transpose
            xyz, direction = (xyz @ TURN_UP).astype(np.float32), TURN_UP @ direction
        image_path = paths[f"image_{self.image_index}"]
        colors = as_rgb01(read_image(image_path), depth.shape, path=image_path, grid=depth_path)
        label, mask, kinds = None, None, []
        if labelled:
            label, mask, kinds = self._read_labels(ref, paths, depth.shape)
        return PointCloudSample.from_grid(
            xyz,
            colors=colors,
            mask=mask,
            label=label,
            category=ref.category,
            sample_id=ref.sample_id,
            defect_type=None if label is None else ("good" if label == 0 else "bad"),
            source=depth_path,
            meta={
                "dataset": self.name,
                "split": ref.split,
                "frame": self.pose,
                "pose": pose,
                "view_direction": direction,
                "turned_up": turned,
                "anomaly_types": kinds,
                "paths": dict(ref.paths),
                **({"gt_grid": mask > 0} if mask is not None else {}),
            },
        )

    def missing_labels(self, ref: SampleRef) -> tuple[Path, str] | None:
        """A sample of a labelled split needs its metadata (the label) and its mask."""
        if self._is_labelled(ref):
            for key in ("metadata", "mask"):
                if key not in ref.paths:
                    problem = f"file is missing: sample {ref.key} has no {key}"
                    return self._expected(ref, key), problem
        return super().missing_labels(ref)

    def _files_read(self, ref: SampleRef) -> list[Path]:
        keys = ["depth", "info_depth", "pose", f"image_{self.image_index}"]
        if self._is_labelled(ref):
            keys += ["metadata", "mask", *(f"{k}_mask" for k in MASK_KINDS if ref.label != 0)]
        return [Path(ref.paths[key]) for key in keys if key in ref.paths]

    def _expected(self, ref: SampleRef, key: str) -> Path:
        """Where item ``key`` of ``ref`` would be."""
        data_dir = self._cat_dirs[ref.category] / ref.split / "data"
        stem = ref.sample_id.rsplit("/", 1)[-1]
        return data_dir / f"{stem}_{key}.{ITEM_SUFFIX.get(key, 'png')}"

    def _is_labelled(self, ref: SampleRef) -> bool:
        self.refs(ref.category, ref.split)  # the scan decides (cached)
        return self._labelled[(ref.category, ref.split)]

    def _required(self, ref: SampleRef, labelled: bool) -> dict[str, Path]:
        keys = ["depth", "info_depth", "pose", f"image_{self.image_index}"]
        keys += ["metadata", "mask"] if labelled else []
        for key in keys:
            if key not in ref.paths:
                raise DatasetFormatError(
                    self._expected(ref, key),
                    f"file is missing: sample {ref.sample_id} needs items {keys}",
                )
        return {key: Path(path) for key, path in ref.paths.items()}

    def _read_labels(
        self, ref: SampleRef, paths: dict[str, Path], shape: tuple[int, int]
    ) -> tuple[int, np.ndarray, list[str]]:
        label = self._read_label(paths["metadata"])
        mask = as_mask(read_image(paths["mask"]), shape, path=paths["mask"], grid=paths["depth"])
        if bool(mask.any()) != bool(label):
            self._problem(
                paths["mask"],
                f"mask has {int(mask.sum())} anomalous pixels but metadata says anomalous: "
                f"{label}; label taken from metadata",
            )
        if ref.label is not None and ref.label != label:
            self._problem(
                paths["metadata"], f"{ref.split} must hold good samples only, got anomalous"
            )
        kinds = []
        for kind in MASK_KINDS if label else ():
            path = paths.get(f"{kind}_mask")
            if (
                path is not None
                and as_mask(read_image(path), shape, path=path, grid=paths["depth"]).any()
            ):
                kinds.append(kind)
        return label, mask, kinds

    @staticmethod
    def _read_label(path: Path) -> int:
        meta = read_yaml(path)
        value = meta.get("anomalous") if isinstance(meta, dict) else None
        if value not in (0, 1):
            raise DatasetFormatError(path, f"metadata must have 'anomalous: 0|1', got {value!r}")
        return int(value)

    @staticmethod
    def _read_depth(path: Path, info_path: Path) -> np.ndarray:
        raw = np.asarray(read_image(path))
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise DatasetFormatError(
                path,
                f"depth must be a 16-bit grayscale PNG, got {raw.dtype} of shape {raw.shape} "
                "(re-extract the archive; 8-bit conversions lose the depth)",
            )
        info = read_yaml(info_path)
        norm = info.get("normalization") if isinstance(info, dict) else None
        lo, hi = (norm.get("min"), norm.get("max")) if isinstance(norm, dict) else (None, None)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi))
        if not numbers or not np.isfinite([lo, hi]).all() or hi <= lo:
            raise DatasetFormatError(
                info_path,
                f"normalization must be {{min: float, max: float}} with max > min, got {norm!r}",
            )
        return decode_eyecandies_depth(raw, float(lo), float(hi))

    def _read_pose(self, path: Path) -> np.ndarray:
        try:
            pose = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as err:
            raise DatasetFormatError(
                path, f"pose must be a 4x4 matrix of numbers, got {err}"
            ) from err
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise DatasetFormatError(
                path, f"pose must be a finite 4x4 matrix, got shape {pose.shape}"
            )
        if not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0]):
            self._problem(path, f"pose last row must be 0 0 0 1, got {pose[3].tolist()}")
        return pose
