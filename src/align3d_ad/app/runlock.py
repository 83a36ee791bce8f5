"""One writer per run folder: an exclusive ``flock`` on ``<run folder>/run.lock``.

The lock file holds the holder's pid, host and start time (JSON), for the message a second
writer gets. The lock is the kernel's: it ends with the process however the process ends, so a
holder that is gone never blocks anyone. A lock file left behind by a process that did not end
cleanly (SIGKILL, a crash, power loss) is *stale*: the next writer takes it over and logs whose it
was. A clean end (the command returns, or the interpreter exits) removes the file. On systems
without ``fcntl.flock`` (Windows) no lock is taken. See docs/runs.md.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run folder's lock, as its lock file says."""

    pid: int | None = None
    host: str | None = None
    started: str | None = None
    command: str | None = None

    def describe(self) -> str:
        if self.pid is None:
            return "another process (which has not written its pid yet)"
        text = f"pid {self.pid} on {self.host or 'an unknown host'}"
        if self.started:
            text += f" since {self.started}"
        return text + (f" ({self.command})" if self.command else "")


class RunLock:
    """An exclusive lock on a run folder, held by this process until :meth:`release`."""

    def __init__(self, folder: Path, fd: int | None, previous: LockHolder | None) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd = fd
        self._pid = os.getpid()
        #: The holder recorded in a stale lock file this lock took over (None: there was none).
        self.previous = previous

    @property
    def held(self) -> bool:
        return self._fd is not None or (fcntl is None and self._pid == os.getpid())

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op in forked children and when released)."""
        _held.pop(_key(self.folder), None)
        if self._fd is None or self._pid != os.getpid():
            return
        # remove the file while still holding it, so no one locks a file about to go
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


#: The locks this process holds, by resolved folder (taking a held folder again returns its lock).
_held: dict[Path, RunLock] = {}


def _key(folder: Path) -> Path:
    return Path(os.path.realpath(folder))  # one lock per folder, whatever the path to it


def _read(fd: int) -> LockHolder | None:
    """The holder a lock file names (None: empty, or not written by us)."""
    try:
        raw = os.pread(fd, 4096, 0)
        doc = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return LockHolder()
    if not isinstance(doc, dict):
        return None if doc is None else LockHolder()
    pid = doc.get("pid")
    return LockHolder(
        pid=pid if isinstance(pid, int) else None,
        host=str(doc["host"]) if "host" in doc else None,
        started=str(doc["started"]) if "started" in doc else None,
        command=str(doc["command"]) if doc.get("command") else None,
    )


def _record(command: list[str] | None) -> bytes:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    doc = {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
           "command": " ".join(command if command is not None else sys.argv)[:300]}  # fmt: skip
    return (json.dumps(doc) + "\n").encode("utf-8")


def try_lock(folder: str | Path, command: list[str] | None = None) -> RunLock | LockHolder:
    """Lock the existing folder ``folder``: its :class:`RunLock`, or the live holder when busy.

    Never waits. A folder this process already holds gives its lock again.
    """
    folder = Path(folder)
    if (held := _held.get(_key(folder))) is not None and held.held:
        return held
    if fcntl is None:  # pragma: no cover - Windows
        lock = RunLock(folder, None, None)
        _held[_key(folder)] = lock
        return lock
    path = folder / LOCK_FILE
    for _ in range(100):  # retried only while releasing holders remove the file under us
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a live process holds it
            holder = _read(fd) or LockHolder()
            os.close(fd)
            return holder
        try:
            mine, now = os.fstat(fd), os.stat(path)
            same = (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: open it anew
    else:  # pragma: no cover - a lock file replaced 100 times in a row
        return LockHolder()
    previous = _read(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _record(command), 0)
    if previous is not None:
        logger.warning("%s: took over the stale lock of %s, which ended without releasing it",
                       path, previous.describe())  # fmt: skip
    lock = RunLock(folder, fd, previous)
    _held[_key(folder)] = lock
    return lock


def held_lock(folder: str | Path) -> RunLock | None:
    """The lock this process holds on ``folder``, or None."""
    return _held.get(_key(Path(folder)))


def release_all(*, keep: frozenset[Path] = frozenset()) -> None:
    """Release every run-folder lock this process holds (the end of a command, or exit).

    ``keep``: folders (as :func:`held_folders` gives them) whose locks stay held, e.g. the ones a
    notebook held before it ran a command through :func:`align3d_ad.app.cli.main`.
    """
    for key, lock in list(_held.items()):
        if key not in keep:
            lock.release()


def held_folders() -> frozenset[Path]:
    """The folders whose locks this process holds now."""
    return frozenset(key for key, lock in _held.items() if lock.held)


atexit.register(release_all)
