"""Locality helpers of the 3D neighbour searches (back-projection fill, 3D smoothing).

Clouds often come in no spatial order (Real3D-AD scans, random surface samples): consecutive rows
lie far apart. A k-d tree query or a neighbour gather over such rows touches memory at random, and
once the cloud outgrows the CPU caches (about 1M points) every step stalls on memory: the cost per
point grew 10-20x from 100k to 1M points. Working in a Z-order (Morton) permutation of the
points, where rows that are near in memory are near in space, keeps these steps linear; results
are mapped back to the input order, so they do not depend on it. :func:`spatial_order_tensor` gives
the same permutation on the points' device (the torch neighbour path, :mod:`.knn`).
"""

from __future__ import annotations

import numpy as np
import torch

#: Bits per axis of the Z-order code: 65536 cells per axis, far finer than any cloud's spacing.
MORTON_BITS = 16


def _spread_bits_tensor(x: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between the bits of int64 ``x`` in [0, 2^16) (bit i -> bit 3 i)."""
    for shift, mask in (
        (32, 0x1F00000000FFFF),
        (16, 0x1F0000FF0000FF),
        (8, 0x100F00F00F00F00F),
        (4, 0x10C30C30C30C30C3),
        (2, 0x1249249249249249),
    ):
        x = (x | (x << shift)) & mask
    return x


#: ``_spread_bits_tensor`` of every 16-bit value (512 KiB): on the CPU, three table look-ups
#: make a code; other devices compute it (no table transfer).
_SPREAD = _spread_bits_tensor(torch.arange(2**MORTON_BITS, dtype=torch.int64))


def spatial_order_tensor(cloud: torch.Tensor) -> torch.Tensor:
    """:func:`spatial_order` of a tensor, on its device: int64 (N,), the same permutation."""
    if cloud.shape[0] < 2:
        return torch.arange(cloud.shape[0], device=cloud.device)
    lo, hi = cloud.amin(dim=0), cloud.amax(dim=0)
    span = float((hi - lo).max())
    scale = (2**MORTON_BITS - 1) / span if span > 0 else 0.0
    cells = ((cloud - lo) * scale).to(torch.int64).clamp_(0, 2**MORTON_BITS - 1)
    if cloud.device.type == "cpu":
        spread = _SPREAD[cells.reshape(-1)].view(cells.shape)
    else:
        spread = _spread_bits_tensor(cells)
    code = spread[:, 0] | (spread[:, 1] << 1) | (spread[:, 2] << 2)
    return code.sort(stable=True).indices


def spatial_order(points: np.ndarray) -> np.ndarray:
    """A permutation of the rows of ``points`` (N, 3) along the Z-order curve of their bounding cube.

    Ties (points in one Morton cell) keep their input order, so the permutation is deterministic.
    """
    return spatial_order_tensor(torch.as_tensor(np.asarray(points))).numpy()


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """``rank`` with ``rank[order[i]] = i``."""
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size, dtype=order.dtype)
    return rank


def search_workers() -> int:
    """Threads of the k-d tree searches: torch's CPU thread setting (``--threads``)."""
    return max(1, torch.get_num_threads())
