"""What a synthetic dataset holds (``synth_manifest.json``) and the output-folder safety rules.

The manifest counts what a reader of the written format will see: per category folder and split,
the samples, normal / anomalous / unlabelled ones, the defect names a reader derives (MVTec 3D-AD:
defect folders; Eyecandies: ``good``/``bad``; Real3D-AD: the kind in the file name) and the valid
points labelled anomalous. These fields are those of ``align3d-ad inspect`` for the same split.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .writers import write_json

MANIFEST_NAME = "synth_manifest.json"


@dataclass
class SynthSplit:
    """Counts of one category/split.

    Attributes:
        samples: Number of samples.
        normal: Samples labelled normal.
        anomalous: Samples labelled anomalous.
        unlabelled: Samples written without labels (Eyecandies ``test_private``).
        defect_types: ``{name: samples}`` as a reader names them (normal ones as ``good``).
        anomalous_points: Valid points labelled anomalous, over all samples.
    """

    samples: int = 0
    normal: int = 0
    anomalous: int = 0
    unlabelled: int = 0
    defect_types: dict[str, int] = field(default_factory=dict)
    anomalous_points: int = 0

    def add(self, label: int | None, defect_type: str | None, anomalous_points: int = 0) -> None:
        """Count one written sample (``label`` None: unlabelled)."""
        self.samples += 1
        if label is None:
            self.unlabelled += 1
        elif label:
            self.anomalous += 1
        else:
            self.normal += 1
        if defect_type is not None:
            self.defect_types[defect_type] = self.defect_types.get(defect_type, 0) + 1
        self.anomalous_points += int(anomalous_points)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields (defect types sorted)."""
        return {
            "samples": self.samples,
            "normal": self.normal,
            "anomalous": self.anomalous,
            "unlabelled": self.unlabelled,
            "defect_types": dict(sorted(self.defect_types.items())),
            "anomalous_points": self.anomalous_points,
        }


@dataclass
class SynthManifest:
    """Content of ``synth_manifest.json``.

    Attributes:
        format: ``mvtec3d``, ``eyecandies`` or ``real3d``.
        seed: The generator seed.
        small: Whether the small variant was written.
        categories: ``{category folder: {split: SynthSplit}}``.
        complete: False while the generator is still writing.
    """

    format: str
    seed: int
    small: bool
    categories: dict[str, dict[str, SynthSplit]] = field(default_factory=dict)
    complete: bool = True

    def to_dict(self) -> dict:
        """``{"format", "seed", "small", "complete", "categories": {cat: {split: {...}}}}``."""
        return {
            "format": self.format,
            "seed": self.seed,
            "small": self.small,
            "complete": self.complete,
            "categories": {
                cat: {split: stats.to_dict() for split, stats in splits.items()}
                for cat, splits in self.categories.items()
            },
        }

    def write(self, out: Path) -> Path:
        """Write ``<out>/synth_manifest.json`` atomically and return its path."""
        path = Path(out) / MANIFEST_NAME
        write_json(path, self.to_dict(), atomic=True, sort_keys=False)  # splits in canonical order
        return path


def prepare_output(out: Path) -> None:
    """Make ``out`` ready for a new synthetic dataset, never touching anything else.

    ``out`` may be missing, empty, or a previous synthetic output: a folder holding only
    ``synth_manifest.json`` and the category folders that manifest lists. Those folders are removed.

    Raises:
        ConfigError: ``out`` is a file, or a non-empty folder that is not a previous synth output.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(path.name for path in out.iterdir())
    if not entries:
        return
    listed = _previous_categories(out, entries)
    unknown = [name for name in entries if name not in listed and name != MANIFEST_NAME]
    if unknown:
        raise ConfigError(
            f"--out must be empty or a previous synth output, got {out} holding {unknown[:5]} "
            f"not listed in its {MANIFEST_NAME}; choose another folder"
        )
    for name in listed:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            raise ConfigError(f"--out entry {target} must be a category folder, got a file")


def _previous_categories(out: Path, entries: list[str]) -> set[str]:
    """Category folders listed by the manifest of a previous synth output in ``out``."""
    if MANIFEST_NAME not in entries:
        raise ConfigError(
            f"--out must be empty or a previous synth output (with {MANIFEST_NAME}), "
            f"got {out} holding {entries[:5]}; choose another folder"
        )
    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
        names = set(data["categories"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{out / MANIFEST_NAME} must be a synth manifest with 'categories', got {err!r}; "
            "choose another --out"
        ) from err
    if any(
        not isinstance(name, str) or not name or "/" in name or name.startswith(".")
        for name in names
    ):
        raise ConfigError(
            f"{out / MANIFEST_NAME} lists invalid category names {sorted(map(str, names))}"
        )
    return names
