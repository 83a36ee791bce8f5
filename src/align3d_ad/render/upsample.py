"""Bilinear upsampling whose backward is deterministic on every device (``--deterministic``).

``F.interpolate(mode="bilinear")`` differentiates on CUDA with atomic adds: two identical runs
differ in the last bits, and under ``torch.use_deterministic_algorithms(True)`` its backward raises.
Bilinear resampling is separable and linear, so it is also ``A_h @ x @ A_w^T`` with two small
interpolation matrices (two taps, i.e. two gathered pixels and their weights, per output row or
column). Forward and backward are then matrix products, which cuBLAS computes deterministically
(with ``CUBLAS_WORKSPACE_CONFIG`` set, as :func:`align3d_ad.device.set_deterministic` does). The
taps follow PyTorch's ``upsample_bilinear2d`` (source index ``(dst + 0.5) * in / out - 0.5`` clamped
at 0 without ``align_corners``, ``dst * (in - 1) / (out - 1)`` with it), so the result equals
``F.interpolate`` up to float rounding (1e-6 in float32, forward and backward).
"""

from __future__ import annotations

import torch

from .._checks import check_shape


def interpolation_matrix(
    n_in: int,
    n_out: int,
    *,
    align_corners: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(n_out, n_in) matrix of 1D linear interpolation, each row holding two taps summing to 1."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}")
    # PyTorch computes the taps in the accumulation type (float32 for float32, bfloat16 and
    # float16 maps, float64 for float64): so do we, to give its weights to the last bit
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    dst = torch.arange(n_out, dtype=acc)
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * torch.tensor(scale, dtype=acc)
    else:
        src = (dst + 0.5) * torch.tensor(n_in / n_out, dtype=acc) - 0.5
        src = src.clamp_(min=0.0)
    lo = src.long().clamp_(max=n_in - 1)  # truncation = floor for src >= 0
    hi = (lo + 1).clamp_(max=n_in - 1)
    frac = src - lo.to(acc)
    rows = torch.arange(n_out)
    matrix = torch.zeros(n_out, n_in, dtype=acc)
    matrix.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, hi), frac, accumulate=True)
    return matrix.to(device=device, dtype=dtype)


def upsample_bilinear(
    x: torch.Tensor, size: tuple[int, int], *, align_corners: bool = False
) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=...)`` as two matrix products.

    Args:
        x: (N, C, H, W) maps (float).
        size: Output (H', W').
        align_corners: As in ``F.interpolate``.

    Returns:
        (N, C, H', W') in the dtype and on the device of ``x``, differentiable w.r.t. ``x``.
    """
    dims = check_shape(x, "N C H W", name="x")
    out_h, out_w = (int(s) for s in size)
    factory = {"align_corners": align_corners, "dtype": x.dtype, "device": x.device}
    rows = interpolation_matrix(dims["H"], out_h, **factory)  # (H', H)
    cols = interpolation_matrix(dims["W"], out_w, **factory)  # (W', W)
    return rows @ (x @ cols.T)  # along W, then H: F.interpolate's order of operations


__all__ = ["interpolation_matrix", "upsample_bilinear"]
