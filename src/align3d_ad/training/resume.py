"""What must hold before a run continues: a run folder, the same config, a readable state.

``train_model(..., resume=True)`` and ``align3d-ad train --resume`` both go through
:func:`check_resumable`; docs/runs.md describes the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .. import distributed, errors
from ..config import Config
from ..errors import Align3DError, CheckpointMismatchError, ConfigError
from ..model.checkpoint import CHECKPOINT_JSON, STATE_FILE, checkpoint_config, read_checkpoint

T = TypeVar("T")

#: Config keys that may differ on resume: where the run computes and caches, not what it learns
#: (the backbone weights are checked by their fingerprint instead of their path).
IGNORED_KEYS = frozenset({"device", "backbone.cache_dir", "backbone.use_cache", "backbone.weights"})
#: Keys holding paths: equal when they name the same file or folder.
PATH_KEYS = frozenset({"data.root"})
#: The progress stage of a finished run.
DONE_STAGE = 3


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(key: str, stored: Any, given: Any) -> bool:
    if key in PATH_KEYS and isinstance(stored, str) and isinstance(given, str):
        return Path(stored).expanduser().resolve() == Path(given).expanduser().resolve()
    return stored == given


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def config_differences(stored: Config, given: Config) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, given value)`` of every key that differs, :data:`IGNORED_KEYS` aside."""
    a, b = _flatten(stored.to_dict()), _flatten(given.to_dict())
    return [
        (key, a.get(key), b.get(key))
        for key in sorted(a.keys() | b.keys())
        if key not in IGNORED_KEYS and not _same(key, a.get(key), b.get(key))
    ]


def check_resumable(run_dir: str | Path, config: Config) -> dict[str, Any]:
    """The checkpoint document of ``run_dir`` once it holds a run trained with ``config``.

    Raises:
        ConfigError: ``run_dir`` is no run folder (no ``checkpoint.json`` or ``state.pt``) or
            its ``checkpoint.json`` is damaged.
        CheckpointMismatchError: the run was trained with another config (the keys are named).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"cannot resume {run_dir}: no such folder; train without --resume to start a run"
        )
    missing = [name for name in (CHECKPOINT_JSON, STATE_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(
            f"cannot resume {run_dir}: not a run folder (no {' or '.join(missing)}); --resume "
            "continues a run that `align3d-ad train` checkpointed there"
        )
    doc = read_checkpoint(run_dir)
    differences = config_differences(checkpoint_config(doc, run_dir), config)
    if differences:
        named = ", ".join(f"{k} (run: {_short(a)}, now: {_short(b)})" for k, a, b in differences)
        raise CheckpointMismatchError(
            f"cannot resume {run_dir} with another config: {named}; resume with the options the "
            f"run was started with (its config is in {CHECKPOINT_JSON}, its command line in "
            "run.json)"
        )
    return doc


def on_main_rank(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only, its result (or its Align3DError) shared with every rank.

    Under torchrun an error on rank 0 alone would leave the other ranks waiting for rank 0's
    result; here every rank raises it. In a single process this is just ``fn()``.
    """
    if not distributed.active():
        return fn()
    box: tuple[str, Any] = ("ok", None)
    if distributed.is_main():
        try:
            box = ("ok", fn())
        except Align3DError as err:
            distributed.broadcast(("error", (type(err).__name__, str(err))))
            raise
    kind, value = distributed.broadcast(box)
    if kind == "error":
        cls = getattr(errors, value[0], Align3DError)
        try:
            err = cls(value[1])
        except TypeError:  # an error type whose constructor takes more than the message
            err = Align3DError(value[1])
        raise err
    return value
