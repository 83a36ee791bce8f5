"""The one place that turns ``--device auto|cpu|cuda[:N]`` into a :class:`torch.device`, and the
switch to deterministic algorithms (``--deterministic``)."""

from __future__ import annotations

import os

import torch

from . import distributed
from .errors import ConfigError

#: cuBLAS workspace setting that makes its kernels deterministic (CUDA >= 10.2; PyTorch's
#: reproducibility notes). ``:16:8`` is the other valid value (less memory, slower).
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks CUDA when available, else CPU.

    In a data-parallel run (torchrun), ``auto`` and ``cuda`` mean the GPU of this process's
    ``LOCAL_RANK``; ``cuda:N`` is refused (every rank would use GPU N).
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    if resolved.type == "cuda" and (distributed.launched() or distributed.active()):
        return torch.device("cuda", distributed.rank_gpu(device))
    return resolved


def set_deterministic(on: bool = True) -> None:
    """Make every later op deterministic (``--deterministic``); ``False`` leaves the mode as it is.

    Turns on ``torch.use_deterministic_algorithms`` (an op without a deterministic kernel raises
    instead of running), sets ``CUBLAS_WORKSPACE_CONFIG`` (unless already set to a valid value)
    and turns cuDNN autotuning off. Stage 2 then upsamples with
    :func:`align3d_ad.render.upsample.upsample_bilinear`, whose CUDA backward is deterministic
    where ``F.interpolate``'s is not. Call it before the first CUDA matrix product.
    """
    if not on:
        return
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
