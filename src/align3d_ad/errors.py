"""Exceptions raised by align3d-ad.

Every error a user can cause derives from :class:`Align3DError`; the command line prints its message
on one line and exits non-zero. Messages follow "<thing> must be <expected>, got <actual>" and name
the file or key at fault and, where there is one, the fix.
"""

from __future__ import annotations

from pathlib import Path


class Align3DError(Exception):
    """Base class of every error align3d-ad raises on bad input or configuration."""


class DatasetFormatError(Align3DError, ValueError):
    """A file or folder does not have the layout or content its format requires.

    Args:
        path: The file or folder at fault.
        problem: What is wrong with it, in one line.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:  # rebuilt from (path, problem) in another process
        return (type(self), (self.path, self.problem))


class ConfigError(Align3DError, ValueError):
    """A configuration key or value is unknown or invalid."""


class WeightsNotFoundError(Align3DError, FileNotFoundError):
    """Backbone weights are neither cached nor given with ``--weights PATH``."""


class CheckpointMismatchError(Align3DError, ValueError):
    """A checkpoint was made with another backbone or settings than the ones asked for."""


class ShapeError(Align3DError, ValueError):
    """An array or tensor does not have the shape a function documents."""


class WorkerDiedError(Align3DError, RuntimeError):
    """A loader worker process ended without returning its batch (most often killed for memory)."""


__all__ = [
    "Align3DError",
    "CheckpointMismatchError",
    "ConfigError",
    "DatasetFormatError",
    "ShapeError",
    "WeightsNotFoundError",
    "WorkerDiedError",
]
