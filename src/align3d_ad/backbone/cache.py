"""On-disk cache of frozen-backbone features (DESIGN.md, "Performance principles").

The image encoder is frozen, so its outputs for one (sample, view set, renderer, backbone) never
change: they are computed once and both training stages read them back.

Layout: ``<root>/<key[:2]>/<key>/<name>.npy`` (one array per name) plus ``manifest.json`` with each
array's shape, dtype, file size and CRC-32 of the file's bytes. An entry is written into a
temporary folder beside its final place and renamed into place in one step, the manifest last, so
readers never see half an entry and two processes that extract the same entry at once both end up
reading one complete copy. On read the manifest is checked against the files, checksums included;
a truncated or corrupt entry (even one of the right size) is recomputed with a warning, never
trusted.

The checksum guards against accidental damage (disk, copies, edits), not against someone who can
write the cache (they can rewrite the manifest too), so CRC-32 is used: it reads at several GB/s,
where a cryptographic hash would cost about as much as the read it checks
(``benchmarks/README.md``, "Cache checksum").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write_text
from ..errors import ConfigError

logger = logging.getLogger(__name__)

#: Version of the on-disk layout; part of every key, so a layout change never reads old entries.
#: 2: each manifest entry holds the CRC-32 of its file.
CACHE_FORMAT = 2
#: Storage dtype of floating-point arrays (features are unit vectors: fp16 keeps ~3 digits).
STORE_FLOAT_DTYPE = np.float16
MANIFEST = "manifest.json"
#: Entries :meth:`FeatureCache.put` lets wait for the background writer (bounds host memory).
MAX_PENDING_WRITES = 2
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def file_crc32(path: str | Path) -> str:
    """CRC-32 of a file's bytes as 8 hex digits (the checksum stored with every cache entry).

    Read through a memory map: no copy, and the pages are then warm for the array's own map.
    """
    with Path(path).open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return f"{zlib.crc32(b''):08x}"
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return f"{zlib.crc32(mapped):08x}"


def _canonical(value: Any) -> Any:
    """JSON-able canonical form of a key part (tuples -> lists, arrays -> lists, paths -> str)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist())
    if isinstance(value, torch.Tensor):
        return _canonical(value.detach().cpu().tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"cache key parts must be JSON-like values, got {type(value).__name__}")


def _to_numpy(value: Any) -> np.ndarray:
    """Host array in storage dtype (floats -> fp16, others unchanged)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point():
            value = value.float()
        value = value.cpu().numpy()
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(STORE_FLOAT_DTYPE)
    return np.ascontiguousarray(array)


class FeatureCache:
    """Folder of cached feature arrays keyed by everything that determines them.

    Args:
        root: Cache folder; None disables the cache (every call computes).

    Attributes:
        hits: Calls answered from disk.
        misses: Calls that computed (including recomputed broken entries).
        broken: Entries found broken (truncated, checksum mismatch, bad manifest) and recomputed.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0
        self.broken = 0
        self._lock = threading.Lock()
        self._pending: dict[str, Mapping[str, Any]] = {}  #: written in the background now
        self._futures: list[Future] = []
        self._writer: ThreadPoolExecutor | None = None
        self._failed: BaseException | None = None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    @staticmethod
    def key(**parts: Any) -> str:
        """SHA-256 (hex) of the canonical JSON of all key parts (order-independent).

        Pass everything that changes the features: sample content hash, view preset rotations,
        image size, splat settings, render mode (geometry | colour), and the backbone's
        ``key_parts()`` (name, weights fingerprint, layers, vv_start, precision, fp32 matmul mode,
        device type).
        """
        payload = {"cache_format": CACHE_FORMAT, **_canonical(parts)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def entry_dir(self, key: str) -> Path:
        """Folder of the entry ``key``."""
        if self.root is None:
            raise ConfigError("the feature cache is disabled (root None); it has no folders")
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ConfigError(f"cache key must be 64 hex digits from FeatureCache.key, got {key!r}")
        return self.root / key[:2] / key

    def get_or_compute(
        self, key: str, compute: Callable[[], Mapping[str, torch.Tensor | np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The arrays of entry ``key``: read from disk, or computed, stored and read back.

        Floating-point arrays are stored (and returned) as float16 whether or not the cache is
        enabled, so results never depend on the cache state. Arrays read from disk are read-only
        memory maps. The entry is on disk when this returns (see :meth:`put` for the
        asynchronous form).

        Args:
            key: From :meth:`key`.
            compute: Returns {name: array or tensor}; names are file-name safe.

        Returns:
            {name: np.ndarray}.
        """
        found = self.lookup(key)
        if found is not None:
            return {k: v if isinstance(v, np.ndarray) else _to_numpy(v) for k, v in found.items()}
        arrays = {k: _to_numpy(v) for k, v in self._checked(compute()).items()}
        self.misses += 1
        if self.root is None:
            return arrays
        folder = self.entry_dir(key)
        self._write(folder, arrays)
        found = self._read(folder)
        if found is None:  # pragma: no cover - only if the disk lies
            raise OSError(f"feature cache entry {folder} is unreadable right after writing")
        return found

    def lookup(self, key: str) -> dict[str, np.ndarray | torch.Tensor] | None:
        """The arrays of entry ``key`` (a hit), or None (nothing counted: :meth:`put` counts).

        An entry still being written in the background is answered from memory.
        """
        if self.root is None:
            return None
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            return dict(pending)
        folder = self.entry_dir(key)
        found = self._read(folder)
        if found is not None:
            self.hits += 1
        elif folder.exists():
            self.broken += 1
        return found

    def put(self, key: str, arrays: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """Store freshly computed arrays under ``key`` (a miss), in a background thread.

        Tensors may live on any device; the thread copies them to the host and writes the entry
        (so the copy and the disk write stay off the caller's path). At most
        ``MAX_PENDING_WRITES`` entries wait; a write error is raised by the next :meth:`put` or
        :meth:`flush`. Callers that need the entry on disk (another process reads it) call
        :meth:`flush`.
        """
        arrays = dict(self._checked(arrays))
        self.misses += 1
        if self.root is None:
            return
        self._raise_failed()
        folder = self.entry_dir(key)
        with self._lock:
            self._pending[key] = arrays
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="feature-cache")
        self._futures.append(self._writer.submit(self._write_pending, key, folder, arrays))
        while len(self._futures) > MAX_PENDING_WRITES:
            self._futures.pop(0).result()
        self._raise_failed()

    def flush(self) -> None:
        """Wait for the background writes of :meth:`put`; raise the first one that failed."""
        while self._futures:
            self._futures.pop(0).result()
        self._raise_failed()

    def _write_pending(self, key: str, folder: Path, arrays: Mapping[str, Any]) -> None:
        try:
            self._write(folder, {k: _to_numpy(v) for k, v in arrays.items()})
        except Exception as err:  # raised in the caller's thread by the next put / flush
            self._failed = self._failed or err
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def _raise_failed(self) -> None:
        if self._failed is not None:
            err, self._failed = self._failed, None
            raise err

    @staticmethod
    def _checked(arrays: Mapping[str, Any]) -> Mapping[str, Any]:
        if not isinstance(arrays, Mapping) or not arrays:
            raise ConfigError("cache compute() must return a non-empty dict of arrays")
        bad = [k for k in arrays if not isinstance(k, str) or not _NAME.match(k)]
        if bad:
            raise ConfigError(f"cache array names must match {_NAME.pattern}, got {bad}")
        return arrays

    def _read(self, folder: Path, *, warn: bool = True) -> dict[str, np.ndarray] | None:
        """The entry's arrays if it is complete and matches its manifest and checksums, else None.

        A broken entry is logged as a warning naming it (unless ``warn`` is False).
        """
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            if warn and folder.exists():
                logger.warning("feature cache entry %s has no %s; recomputing", folder, MANIFEST)
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            out = {}
            for name, info in manifest["arrays"].items():
                path = folder / f"{name}.npy"
                if path.stat().st_size != info["bytes"]:
                    raise ValueError(f"{path.name} has {path.stat().st_size} bytes, not {info['bytes']}")
                crc, stored = file_crc32(path), info["crc32"]
                if crc != stored:
                    raise ValueError(
                        f"{path.name} does not match its checksum (crc32 {crc}, stored {stored})"
                    )
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
                    raise ValueError(f"{path.name} is {array.shape} {array.dtype}, not {info}")
                out[name] = array
            return out
        except (OSError, ValueError, KeyError, TypeError) as err:
            if warn:
                logger.warning("feature cache entry %s is broken (%s); recomputing", folder, err)
            return None

    def _write(self, folder: Path, arrays: dict[str, np.ndarray]) -> None:
        """Write into a private temporary folder, then rename it into place."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            info = {}
            for name, array in arrays.items():
                path = tmp / f"{name}.npy"
                np.save(path, array, allow_pickle=False)
                info[name] = {
                    "shape": list(array.shape),
                    "dtype": str(array.dtype),
                    "bytes": path.stat().st_size,
                    "crc32": file_crc32(path),
                }
            atomic_write_text(tmp / MANIFEST, json.dumps({"arrays": info}, indent=1))
            self._install(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _install(self, tmp: Path, folder: Path) -> None:
        """Rename ``tmp`` to ``folder``; a broken entry there is moved aside first."""
        try:
            os.rename(tmp, folder)
            return
        except OSError:
            if self._read(folder, warn=False) is not None:  # another process finished it first
                return
        trash = folder.parent / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):  # someone else may have moved it already
            os.rename(folder, trash)
        with contextlib.suppress(OSError):  # a concurrent writer may have installed its copy
            os.rename(tmp, folder)
        shutil.rmtree(trash, ignore_errors=True)

    def size_bytes(self) -> int:
        """Total bytes of all files under the cache root (0 when disabled or empty)."""
        if self.root is None or not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def __repr__(self) -> str:
        return f"FeatureCache(root={self.root}, hits={self.hits}, misses={self.misses})"


__all__ = ["CACHE_FORMAT", "STORE_FLOAT_DTYPE", "FeatureCache", "file_crc32"]
