"""The one place that turns ``--device auto|cpu|cuda[:N]`` into a :class:`torch.device`."""

from __future__ import annotations

import torch

from . import distributed
from .errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks CUDA when available, else CPU.

    In a data-parallel run (torchrun), ``auto`` and ``cuda`` mean the GPU of this process's
    ``LOCAL_RANK``.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available() and distributed.active():
        return torch.device("cuda", distributed.local_rank())
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    return resolved
