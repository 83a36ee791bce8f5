"""Dataset reader interface, sample references and the reader registry (DESIGN.md, "data").

A reader turns one dataset folder, laid out as the dataset is distributed (DATASETS.md), into
cheap :class:`SampleRef` descriptions (no data loaded) and, on demand, into
:class:`~align3d_ad.data.PointCloudSample` objects. Readers never skip anything silently: every file
they ignore or find suspicious (a broken or self-looping symlink included) is appended to
:attr:`DatasetReader.problems`. Before a long job, :meth:`DatasetReader.check_layout` says when the
folder has another layout than the reader's, :meth:`DatasetReader.missing_labels` which samples
cannot be evaluated and :meth:`DatasetReader.check_files` which files are truncated.
"""

from __future__ import annotations

import inspect
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from ...errors import ConfigError, DatasetFormatError
from ..sample import PointCloudSample
from ._headers import check_file, describe_unreadable, unreadable_entries

logger = logging.getLogger(__name__)

SKIPPED_PREFIX = "skipped: "  # problems starting with this mark a file or folder left unread

_REGISTRY: dict[str, type[DatasetReader]] = {}
_DIGITS = re.compile(r"(\d+)")

R = TypeVar("R", bound="type[DatasetReader]")


@dataclass(frozen=True)
class SampleRef:
    """A cheap description of one sample; nothing is loaded until :meth:`DatasetReader.load`.

    Attributes:
        dataset: Registered reader name (``"mvtec3d"``, ...).
        category: Category folder name (``"bagel"``).
        split: Split name (``"train"``, ``"test"``, ``"test_public"``, ...).
        sample_id: Identifier unique within the category, e.g. ``"test/crack/000"``,
            ``"test_public/03"``, ``"test/11_bulge"``.
        label: 1 anomalous, 0 normal, None unknown.
        defect_type: Defect name (``"good"`` for normal samples) or None when unknown.
        paths: The files that make up the sample, e.g. ``{"xyz": ..., "rgb": ..., "gt": ...}``.
    """

    dataset: str
    category: str
    split: str
    sample_id: str
    label: int | None
    defect_type: str | None
    paths: Mapping[str, Path] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """``"<category>/<sample_id>"``: unique within the whole dataset."""
        return f"{self.category}/{self.sample_id}"


class DatasetReader(ABC):
    """Base class of the dataset readers.

    Subclasses set :attr:`name` and :attr:`labelled_split`, take their options as keyword-only
    ``__init__`` arguments, and implement ``_is_category_dir``, ``_find_splits``, ``_scan`` and
    ``_load``. This class validates names, caches scans and records problems.

    Attributes:
        root: The folder holding the category folders.
        problems: ``(path, problem)`` for every file skipped or found suspicious while scanning
            or loading; problems that skipped a file start with ``"skipped: "``.
        skipped: The files and folders left unread (each also has an entry in ``problems``).
    """

    name: ClassVar[str] = ""
    labelled_split: ClassVar[str] = "test"
    #: The folder layout in words (named when a folder does not have it).
    layout: ClassVar[str] = ""
    #: Globs, relative to the root, of which one matches in every dataset with this layout.
    layout_globs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetFormatError(root, "folder does not exist (pass --root DIR of the dataset)")
        self.root = self._resolve_root(root)
        self.problems: list[tuple[Path, str]] = []
        self.skipped: list[Path] = []
        self._seen: set[tuple[Path, str]] = set()
        self._grouped: dict[str, list[Path]] = {}
        self._categories: list[str] | None = None
        self._splits: dict[str, list[str]] = {}
        self._refs: dict[tuple[str, str], list[SampleRef]] = {}

    # ------------------------------------------------------------------ public API
    def categories(self) -> list[str]:
        """Sorted category names found under :attr:`root`."""
        if self._categories is None:
            self._categories = self._find_categories()
            if not self._categories:
                self._problem(self.root, f"no {self.name} category folders found")
        return list(self._categories)

    def splits(self, category: str) -> list[str]:
        """Split names of ``category`` in the dataset's canonical order."""
        self._check_category(category)
        if category not in self._splits:
            self._splits[category] = self._find_splits(category)
        return list(self._splits[category])

    def refs(self, category: str, split: str) -> list[SampleRef]:
        """Sorted, deterministic references to every sample of ``category`` / ``split``."""
        valid = self.splits(category)
        if split not in valid:
            raise ConfigError(
                f"split must be one of {valid} for category {category!r} of {self.name} "
                f"at {self.root}, got {split!r}"
            )
        if (category, split) not in self._refs:
            self._refs[(category, split)] = self._scan(category, split)
        return list(self._refs[(category, split)])

    def iter_refs(
        self, categories: list[str] | None = None, splits: list[str] | None = None
    ) -> Iterator[SampleRef]:
        """Every reference of the chosen categories (default all) and splits (default all)."""
        for category in categories if categories is not None else self.categories():
            for split in self.splits(category):
                if splits is None or split in splits:
                    yield from self.refs(category, split)

    def find(self, sample_id: str, *, category: str | None = None) -> SampleRef:
        """The reference with ``sample_id`` (or ``"<category>/<sample_id>"`` when no category)."""
        if category is None:
            category, _, sample_id = sample_id.partition("/")
        self._check_category(category)
        for ref in self.iter_refs([category]):
            if ref.sample_id == sample_id:
                return ref
        raise ConfigError(
            f"sample_id must name a sample of {category!r} in {self.name} at {self.root} "
            f"(e.g. {self._example_id(category)!r}), got {sample_id!r}"
        )

    def load(self, ref: SampleRef) -> PointCloudSample:
        """Read the sample ``ref`` describes; raises DatasetFormatError on bad files."""
        if ref.dataset != self.name:
            raise ConfigError(f"ref.dataset must be {self.name!r}, got {ref.dataset!r}")
        return self._load(ref)

    @classmethod
    def looks_like(cls, root: str | Path) -> bool:
        """Cheap guess: has ``root`` (or its single subfolder) this reader's layout?"""
        root = Path(root)
        if not cls.layout_globs:
            return True
        inner = subdirs(root) if root.is_dir() else []
        roots = [root, *inner] if len(inner) == 1 else [root]
        return any(next(r.glob(g), None) is not None for r in roots for g in cls.layout_globs)

    def check_layout(self) -> None:
        """Raise DatasetFormatError when :attr:`root` holds no sample of this reader's layout.

        The message names the layout expected and, when another reader's layout matches, that
        reader. Cheap: globs first, then scans up to the first sample found.
        """
        layout = self.layout or "see DATASETS.md"
        if self.looks_like(self.root):
            if next(self.iter_refs(), None) is not None:
                return
            raise DatasetFormatError(
                self.root,
                f"no {self.name} samples found: its folders hold no sample files ({layout})",
            )
        others = [
            name for name, cls in sorted(_REGISTRY.items())
            if name != self.name and cls.layout_globs and cls.looks_like(self.root)
        ]  # fmt: skip
        hint = ""
        if others:
            hint = f"; it looks like a {others[0]} dataset (pass --dataset {others[0]})"
        raise DatasetFormatError(
            self.root,
            f"no {self.name} samples found: the folder does not have the {self.name} layout "
            f"({layout}){hint}",
        )

    def missing_labels(self, ref: SampleRef) -> tuple[Path, str] | None:
        """Why ``ref`` cannot be evaluated, as ``(file at fault, problem)``; None if it can."""
        if ref.label is None:
            path = next(iter(ref.paths.values()), self.root)
            return Path(path), f"sample {ref.key} has no label ({ref.split} is unlabelled)"
        return None

    def check_files(self, ref: SampleRef) -> None:
        """Raise DatasetFormatError for a file of ``ref`` that is missing, empty or truncated.

        Reads headers only (see :mod:`._headers`); a file that passes may still fail to decode.
        """
        for path in self._files_read(ref):
            check_file(path)

    def flush_warnings(self) -> None:
        """Log, as one warning per kind, the problems recorded with a ``group`` since last time."""
        for group, paths in self._grouped.items():
            names = ", ".join(_relative(path, self.root) for path in paths)
            logger.warning("%s: %d file(s): %s", group, len(paths), names)
        self._grouped.clear()

    def take_grouped(self) -> dict[str, list[Path]]:
        """The grouped problems recorded since last time, forgotten here (a worker's, to send)."""
        taken, self._grouped = self._grouped, {}
        return taken

    def add_grouped(self, grouped: dict[str, list[Path]]) -> None:
        """Merge grouped problems another process recorded (:meth:`take_grouped`)."""
        for group, paths in grouped.items():
            mine = self._grouped.setdefault(group, [])
            mine.extend(p for p in paths if p not in mine)

    # ------------------------------------------------------------------ for subclasses
    def _is_category_dir(self, path: Path) -> bool:  # pragma: no cover - overridden
        return False

    def _files_read(self, ref: SampleRef) -> list[Path]:
        """The files :meth:`load` reads for ``ref`` (default: all of ``ref.paths``)."""
        return [Path(path) for path in ref.paths.values()]

    def _subdirs(self, path: Path) -> list[Path]:
        """:func:`subdirs`, recording the entries that are neither files nor folders."""
        self._report_unreadable(path)
        return subdirs(path)

    def _files(self, path: Path) -> list[Path]:
        """:func:`files`, recording the entries that are neither files nor folders."""
        self._report_unreadable(path)
        return files(path)

    def _report_unreadable(self, path: Path) -> None:
        for entry in unreadable_entries(path):
            self._skip(entry, describe_unreadable(entry))

    def _find_categories(self) -> list[str]:
        """Subfolders of :attr:`root` accepted by ``_is_category_dir``; others are problems."""
        found = []
        for child in self._subdirs(self.root):
            if self._is_category_dir(child):
                found.append(child.name)
            else:
                self._skip(child, f"not a {self.name} category folder (no split folders inside)")
        return found

    @abstractmethod
    def _find_splits(self, category: str) -> list[str]: ...

    @abstractmethod
    def _scan(self, category: str, split: str) -> list[SampleRef]: ...

    @abstractmethod
    def _load(self, ref: SampleRef) -> PointCloudSample: ...

    def _resolve_root(self, root: Path) -> Path:
        """Descend into a single wrapper folder (e.g. an archive's top folder) when needed."""
        children = subdirs(root)
        if any(self._is_category_dir(child) for child in children) or len(children) != 1:
            return root
        inner = children[0]
        if any(self._is_category_dir(grandchild) for grandchild in subdirs(inner)):
            logger.info("%s: using %s, the folder holding the categories", self.name, inner)
            return inner
        return root

    def _check_category(self, category: str) -> None:
        valid = self.categories()
        if category not in valid:
            raise ConfigError(
                f"category must be one of {valid} in {self.name} at {self.root}, got {category!r}"
            )

    def _problem(self, path: str | Path, problem: str, *, group: str | None = None) -> None:
        """Record (once) that ``path`` is suspicious.

        Logged as a warning at once, or, with ``group``, quietly: :meth:`flush_warnings` then logs
        every file of the group in one warning.
        """
        entry = (Path(path), problem)
        if entry not in self._seen:
            self._seen.add(entry)
            self.problems.append(entry)
            if group is None:
                logger.warning("%s: %s", path, problem)
            else:
                logger.debug("%s: %s", path, problem)
                self._grouped.setdefault(group, []).append(Path(path))

    def _skip(self, path: str | Path, reason: str) -> None:
        """Record (once) that ``path`` was left unread, and why."""
        entry = (Path(path), SKIPPED_PREFIX + reason)
        if entry not in self._seen:
            self.skipped.append(Path(path))
        self._problem(path, SKIPPED_PREFIX + reason)

    def _example_id(self, category: str) -> str:
        first = next(self.iter_refs([category]), None)
        return first.sample_id if first is not None else "<none found>"


def subdirs(path: Path) -> list[Path]:
    """Non-hidden subfolders of ``path``, sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def files(path: Path) -> list[Path]:
    """Non-hidden plain files of ``path`` in natural order (``2`` before ``10``)."""
    found = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: natural_key(p.name))


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``"9_a" < "10_a"``."""
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text)
    )


def register_dataset(cls: R) -> R:
    """Class decorator: add a :class:`DatasetReader` subclass to the registry as ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, DatasetReader)) or not cls.name:
        raise ConfigError(f"dataset reader must subclass DatasetReader and set name, got {cls!r}")
    known = _REGISTRY.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ConfigError(
            f"dataset name {cls.name!r} is already registered by {known.__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def list_datasets() -> list[str]:
    """Sorted names of the registered readers."""
    return sorted(_REGISTRY)


def get_dataset(name: str, root: str | Path, **options) -> DatasetReader:
    """Build the reader registered as ``name`` for the dataset folder ``root``.

    Raises:
        ConfigError: unknown ``name`` or option (the message lists the valid ones).
        DatasetFormatError: ``root`` is not a folder.
    """
    cls = _REGISTRY.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"dataset must be one of {list_datasets()}, got {name!r}")
    params = inspect.signature(cls.__init__).parameters
    valid = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"options of dataset {cls.name!r} must be among {valid or 'none'}, got {unknown}"
        )
    return cls(root, **options)


def as_rgb01(image: np.ndarray, shape: tuple[int, int], *, path: Path, grid: Path) -> np.ndarray:
    """Colour image (H, W[, 1|3|4]) of any integer depth -> float32 (H, W, 3) in [0, 1].

    Raises:
        DatasetFormatError: ``image`` is not (H, W) = ``shape``, pixel-aligned with ``grid``.
    """
    image = np.asarray(image)
    if image.shape[:2] != tuple(shape) or image.ndim not in (2, 3):
        raise DatasetFormatError(
            path, f"image must be {shape[0]}x{shape[1]} like {grid.name}, got shape {image.shape}"
        )
    if image.ndim == 2:
        image = image[..., None]
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    if image.shape[2] != 3:
        raise DatasetFormatError(path, f"image must have 1, 3 or 4 channels, got {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        return (image.astype(np.float32) / float(np.iinfo(image.dtype).max)).astype(np.float32)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def as_mask(image: np.ndarray, shape: tuple[int, int], *, path: Path, grid: Path) -> np.ndarray:
    """Ground-truth image (H, W[, C]) -> bool (H, W): any channel > 0 is anomalous.

    Raises:
        DatasetFormatError: ``image`` is not (H, W) = ``shape``, pixel-aligned with ``grid``.
    """
    image = np.asarray(image)
    if image.shape[:2] != tuple(shape) or image.ndim not in (2, 3):
        raise DatasetFormatError(
            path, f"mask must be {shape[0]}x{shape[1]} like {grid.name}, got shape {image.shape}"
        )
    return image > 0 if image.ndim == 2 else (image > 0).any(axis=2)
