"""The float32 arithmetic mode of matmuls and convolutions (TF32 or full fp32).

On Ampere and later GPUs, cuDNN convolutions (the patch embedding) run in TF32 by default, and
``torch.set_float32_matmul_precision("high")`` lets matmuls do the same; features then differ from
the CPU's by about 1e-3. :func:`use_full_fp32` turns both off (``load_backbone`` calls it for an
fp32 backbone), and :func:`matmul_mode` names the mode in force, for the feature-cache key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def _read(legacy: Callable[[], object], new: Callable[[], object]) -> str:
    """A flag's value; torch refuses the legacy getter after a mix of old and new TF32 APIs."""
    try:
        return str(legacy())
    except RuntimeError:
        return f"fp32_precision={new()}"


def matmul_mode() -> str:
    """The float32 matmul / convolution mode now in force, e.g. ``highest,cuda-tf32=False,...``.

    Read from torch's process-wide flags at call time: the float32 matmul precision (``highest``
    = full fp32), whether cuBLAS matmuls and cuDNN convolutions may use TF32. The flags exist (and
    are read) on CPU-only builds too.
    """
    matmul = torch.backends.cuda.matmul
    cudnn = torch.backends.cudnn
    parts = (
        _read(torch.get_float32_matmul_precision, lambda: torch.backends.fp32_precision),
        "cuda-tf32=" + _read(lambda: matmul.allow_tf32, lambda: matmul.fp32_precision),
        "cudnn-tf32=" + _read(lambda: cudnn.allow_tf32, lambda: cudnn.conv.fp32_precision),
    )
    return ",".join(parts)


#: :func:`matmul_mode` after :func:`use_full_fp32`.
FULL_FP32 = "highest,cuda-tf32=False,cudnn-tf32=False"


def use_full_fp32() -> None:
    """Run float32 matmuls and cuDNN convolutions in full fp32 (no TF32), process-wide.

    A process-wide setting (torch has no per-module one), logged when it changes anything (at
    info level where CUDA is available, the only place TF32 exists; at debug level elsewhere).
    """
    before = matmul_mode()
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if before != FULL_FP32:
        level = logging.INFO if torch.cuda.is_available() else logging.DEBUG
        logger.log(level, "float32 matmuls and convolutions set to full fp32 (were %s)", before)


__all__ = ["FULL_FP32", "matmul_mode", "use_full_fp32"]
