"""Dataset reader interface, sample references and the reader registry (DESIGN.md, "data").

A reader turns one dataset folder, laid out as the dataset is distributed (DATASETS.md), into
cheap :class:`SampleRef` descriptions (no data loaded) and, on demand, into
:class:`~align3d_ad.data.PointCloudSample` objects. Readers never skip anything silently: every file
they ignore or find suspicious is appended to :attr:`DatasetReader.problems`.
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

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetFormatError(root, "folder does not exist (pass --root DIR of the dataset)")
        self.root = self._resolve_root(root)
        self.problems: list[tuple[Path, str]] = []
        self.skipped: list[Path] = []
        self._seen: set[tuple[Path, str]] = set()
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

    # ------------------------------------------------------------------ for subclasses
    def _is_category_dir(self, path: Path) -> bool:  # pragma: no cover - overridden
        return False

    def _find_categories(self) -> list[str]:
        """Subfolders of :attr:`root` accepted by ``_is_category_dir``; others are problems."""
        found = []
        for child in subdirs(self.root):
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

    def _problem(self, path: str | Path, problem: str) -> None:
        """Record (once) that ``path`` is suspicious."""
        entry = (Path(path), problem)
        if entry not in self._seen:
            self._seen.add(entry)
            self.problems.append(entry)
            logger.warning("%s: %s", path, problem)

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
