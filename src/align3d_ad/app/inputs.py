"""The point clouds a ``predict`` run scores: files named, and the clouds found in folders named.

Folders are walked recursively (symlinked folders followed once; loops and broken links reported,
never followed forever). In a folder only files with a point-cloud suffix are looked at, and of
those the ones that are not clouds (a ``README.txt``, a score array, an earlier ``predict``'s
outputs, hidden files) are skipped and reported. Files named on the command line or chosen with
``--glob`` are never skipped: a non-cloud among them is a bad input. Every input is probed
cheaply (:func:`~align3d_ad.data.probe.probe_point_cloud`) before anything is scored.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..data import SUPPORTED_SUFFIXES
from ..data.probe import probe_point_cloud
from ..errors import Align3DError, DatasetFormatError

logger = logging.getLogger(__name__)

#: The table ``predict`` writes beside its outputs (how earlier outputs are recognised).
SCORES_CSV = "object_scores.csv"
#: The per-point property of the PLY files ``predict`` writes.
SCORE_PROPERTY = "anomaly_score"
#: Skipped files named in the report line.
REPORT_NAMES = 3


@dataclass
class Candidate:
    """One input cloud and, when a cheap look found it broken, the problem (one line)."""

    path: Path
    error: str | None = None


#: Kinds of skipped files, in the order the report names them.
NOT_CLOUD, EARLIER_OUTPUT, LOOP, BROKEN, HIDDEN = (
    "not point clouds", "outputs of an earlier predict", "symlink loops", "broken symlinks",
    "hidden files",
)  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    """A file found in a folder and not scored: its path relative to that folder, kind, why."""

    path: Path
    kind: str
    detail: str


@dataclass
class Inputs:
    """Clouds to score, in order, and the files of the folders scanned that were skipped."""

    clouds: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_line(self) -> str | None:
        """One line reporting the skipped files (counts per kind, a few names), or None."""
        if not self.skipped:
            return None
        parts = []
        for kind in (NOT_CLOUD, EARLIER_OUTPUT, LOOP, BROKEN, HIDDEN):
            names = [str(s.path) for s in self.skipped if s.kind == kind]
            if names:
                shown = ", ".join(names[:REPORT_NAMES])
                shown += ", ..." if len(names) > REPORT_NAMES else ""
                parts.append(f"{kind}: {len(names)} ({shown})")
        return (
            f"skipped {len(self.skipped)} file(s) - {'; '.join(parts)} - name files or use "
            "--glob PATTERN to choose them"
        )


def _link_problem(path: Path) -> str | None:
    """Why a symlink cannot be followed (loop, broken), or None."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return "broken symlink"
    return None


def _walk(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Every file under ``folder`` (sorted), following symlinked folders once each."""
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        info = current.stat()
        if (info.st_dev, info.st_ino) in seen:
            skipped.append(Skipped(current, LOOP, "links to a folder already scanned"))
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            raise DatasetFormatError(current, f"cannot list folder ({exc.strerror})") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() and (problem := _link_problem(path)) is not None:
                kind = LOOP if problem == "symlink loop" else BROKEN
                skipped.append(Skipped(path, kind, problem))
            elif entry.name.startswith("."):
                if entry.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
                    skipped.append(Skipped(path, HIDDEN, "hidden file"))
            elif entry.is_dir():
                stack.append(path)
            elif entry.is_file():
                files.append(path)
    return sorted(files)


class _EarlierOutputs:
    """Recognises the files an earlier ``predict`` wrote (listed in the object_scores.csv beside
    them, or a PLY with the ``anomaly_score`` property)."""

    def __init__(self) -> None:
        self._names: dict[Path, set[str]] = {}

    def _listed(self, folder: Path) -> set[str]:
        if folder not in self._names:
            names: set[str] = set()
            table = folder / SCORES_CSV
            if table.is_file():
                try:
                    with table.open(newline="", encoding="utf-8") as fh:
                        names = {row.get("name") or "" for row in csv.DictReader(fh)}
                except (OSError, UnicodeDecodeError, csv.Error):
                    names = set()
            self._names[folder] = names
        return self._names[folder]

    def listed(self, path: Path) -> bool:
        """Whether ``path`` is a ``.npy``/``.ply`` named in the object_scores.csv beside it."""
        return path.suffix.lower() in (".npy", ".ply") and path.stem in self._listed(path.parent)


def _probe(
    path: Path, *, named: bool, chosen: bool, outputs: _EarlierOutputs
) -> Candidate | Skipped:
    """A candidate (maybe broken), or why a file found in a folder is skipped.

    ``named``: given on the command line (scored even when an earlier output); ``chosen``: named
    or matched by ``--glob`` (a non-cloud is then an error, not skipped).
    """
    if not named and outputs.listed(path):
        return Skipped(path, EARLIER_OUTPUT, f"listed in the {SCORES_CSV} beside it")
    try:
        probe = probe_point_cloud(path)
    except Align3DError as err:
        return Candidate(path, err.problem if isinstance(err, DatasetFormatError) else str(err))
    if probe.not_cloud is not None:
        if chosen:
            return Candidate(path, f"not a point cloud: {probe.not_cloud}")
        return Skipped(path, NOT_CLOUD, probe.not_cloud)
    if not named and path.suffix.lower() == ".ply" and SCORE_PROPERTY in probe.fields:
        return Skipped(path, EARLIER_OUTPUT, f"a scored PLY ({SCORE_PROPERTY} property)")
    return Candidate(path)


def _matches(path: Path, root: Path, globs: Sequence[str]) -> bool:
    relative = PurePosixPath(path.relative_to(root).as_posix())
    return any(relative.match(pattern) for pattern in globs)


def find_inputs(paths: Sequence[Path], globs: Sequence[str] = ()) -> Inputs:
    """The clouds named in ``paths`` or found in its folders (``globs``: only matching files).

    Raises:
        DatasetFormatError: A path that does not exist, or a folder holding no point clouds.
    """
    found = Inputs()
    outputs = _EarlierOutputs()
    for path in paths:
        if path.is_dir():
            skipped: list[Skipped] = []
            before = len(found.clouds)
            for file in _walk(path, skipped):
                if file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    continue
                if globs and not _matches(file, path, globs):
                    continue
                result = _probe(file, named=False, chosen=bool(globs), outputs=outputs)
                if isinstance(result, Candidate):
                    found.clouds.append(result)
                else:
                    skipped.append(result)
            for skip in sorted(skipped, key=lambda x: x.path):
                logger.debug("predict: skipped %s (%s)", skip.path, skip.detail)
                found.skipped.append(Skipped(skip.path.relative_to(path), skip.kind, skip.detail))
            if len(found.clouds) == before:
                what = " or ".join(globs) if globs else ", ".join(SUPPORTED_SUFFIXES)
                note = ""
                if skipped and not globs:
                    first = min(skipped, key=lambda x: x.path)
                    note = f"; skipped {len(skipped)} other file(s), e.g. {first.path.name}: "
                    note += first.detail
                raise DatasetFormatError(path, f"folder holds no point clouds ({what}){note}")
        elif path.is_file():
            found.clouds.append(_probe(path, named=True, chosen=True, outputs=outputs))
        elif path.is_symlink():
            raise DatasetFormatError(path, f"cannot be read: {_link_problem(path)}")
        else:
            raise DatasetFormatError(path, "no such file or folder")
    return found


__all__ = ["Candidate", "Inputs", "SCORES_CSV", "Skipped", "find_inputs"]
