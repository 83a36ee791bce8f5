"""The one place that turns ``--device auto|cpu|cuda[:N]`` into a :class:`torch.device`."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    return resolved
