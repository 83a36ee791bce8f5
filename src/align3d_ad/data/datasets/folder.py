"""Plain-folder reader for prediction: every point-cloud file under a folder, unlabelled.

Files of the supported suffixes are found recursively and sorted (natural order of their relative
paths); the category of a file is the name of the folder holding it, the sample id its path
relative to ``root``. Every other file is recorded as skipped; hidden files and folders are ignored.
There is one split, ``"test"``, and every label is None.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigError
from ..io import SUPPORTED_SUFFIXES, load_point_cloud
from ..sample import PointCloudSample
from ._headers import describe_unreadable
from .base import DatasetReader, SampleRef, natural_key, register_dataset

logger = logging.getLogger(__name__)

SPLIT = "test"
DEFAULT_SUFFIXES = SUPPORTED_SUFFIXES  # every format io.load_point_cloud reads


@register_dataset
class FolderReader(DatasetReader):
    """Reader of any folder of point-cloud files (or of one file).

    Args:
        root: A folder (searched recursively) or a single point-cloud file.
        suffixes: File suffixes to read (default: every format ``io.load_point_cloud`` reads;
            a suffix it does not read makes loading fail).
    """

    name = "folder"
    labelled_split = SPLIT
    layout = f"point-cloud files ({', '.join(DEFAULT_SUFFIXES)}) anywhere under the folder"

    def __init__(self, root: str | Path, *, suffixes: Sequence[str] | None = None) -> None:
        root = Path(root).expanduser()
        self._single = root if root.is_file() else None
        chosen = DEFAULT_SUFFIXES if suffixes is None else suffixes
        if isinstance(chosen, str) or not chosen:
            raise ConfigError(f"suffixes must be a non-empty list like ['.pcd'], got {suffixes!r}")
        self.suffixes = tuple("." + str(s).lower().lstrip(".") for s in chosen)
        self._files: dict[str, list[Path]] = {}
        super().__init__(root.parent if self._single else root)

    def _resolve_root(self, root: Path) -> Path:
        return root.resolve()

    def _find_categories(self) -> list[str]:
        for path in self._candidates():
            if path.suffix.lower() in self.suffixes:
                self._files.setdefault(path.parent.name, []).append(path)
            else:
                self._skip(path, f"unsupported suffix (reads {', '.join(self.suffixes)})")
        return sorted(self._files)

    def _candidates(self) -> list[Path]:
        if self._single is not None:
            return [self._single.resolve()]
        found = []
        for path in self.root.rglob("*"):
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue
            if path.is_file():
                found.append(path)
            elif not path.is_dir():  # a broken or looping symlink: never silently left out
                self._skip(path, describe_unreadable(path))
        return sorted(found, key=lambda p: natural_key(p.relative_to(self.root).as_posix()))

    def _find_splits(self, category: str) -> list[str]:
        return [SPLIT]

    def _scan(self, category: str, split: str) -> list[SampleRef]:
        return [
            SampleRef(
                self.name,
                category,
                split,
                path.relative_to(self.root).as_posix(),
                None,
                None,
                {"cloud": path},
            )
            for path in self._files.get(category, [])
        ]

    def _load(self, ref: SampleRef) -> PointCloudSample:
        sample = load_point_cloud(
            Path(ref.paths["cloud"]),
            category=ref.category,
            sample_id=ref.sample_id,
            meta={"dataset": self.name, "split": ref.split},
        )
        sample.point_labels = None  # unlabelled by definition, even if the file has a label column
        return sample
