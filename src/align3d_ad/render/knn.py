"""Exact k-nearest-neighbour search in torch (CPU and CUDA), and the per-device backend choice.

:func:`knn` answers like ``scipy.spatial.cKDTree(points).query(queries, k, distance_upper_bound)``
(always two-dimensional: (M, k) distances and int64 indices; a missing neighbour is index N at
distance inf) but runs on the points' device, so that the neighbour searches of the scoring path
(point spacing, the hidden-point fill, 3D smoothing) need no host round trip on a GPU.

Method: voxel hashing on sorted cell keys. The points are binned into cubic cells of side h and
sorted by cell key; a query's candidates are the points of the 3 x 3 x 3 cells around its own
(9 contiguous runs of the sorted keys, as the three cells along z have consecutive keys). Every
point closer than ``h (1 + the query's distance to its cell's nearest face, in cells)`` is then a
candidate, so a query whose k-th candidate distance is within that radius has its exact k nearest;
the others are searched again with a doubled cell (or end at ``distance_upper_bound``). Queries are
processed in chunks, grouped by candidate count (powers of two) so that the padded (rows,
candidates) distance matrix stays within ``PAIR_BUDGET`` entries. Distances are computed in
float64 (as cKDTree does) and returned in the points' dtype. Among equally distant neighbours the
choice and order are ``topk``'s (cKDTree's are its traversal's): the same neighbours up to ties.

Backend choice (:func:`neighbour_backend`): on the CPU the k-d tree (scipy, multi-threaded C++) is
faster (``benchmarks/neighbours.py``: 2-7x for the three uses at 100k and 1M points, one thread),
so ``auto`` takes scipy there and torch on any other device. ``ALIGN3D_NEIGHBOURS=auto|torch|scipy`` (environment)
or :func:`neighbours_backend` (a context manager, which wins over the environment) force one, e.g.
to run the torch path on the CPU in tests and benchmarks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from ..errors import ConfigError

#: The environment variable that forces a backend.
BACKEND_ENV = "ALIGN3D_NEIGHBOURS"
#: Accepted backends.
BACKENDS = ("auto", "torch", "scipy")
#: Entries of the padded (query rows x candidates) distance matrix of one chunk.
PAIR_BUDGET = 2**21
#: Queries whose candidate ranges are looked up at once.
QUERY_CHUNK = 2**16
#: Cells per axis at most (keys stay within int64; finer cells only help outliers' neighbours).
MAX_CELLS = 2**20
#: Slack of the guaranteed radius, in cells (float rounding of the cell coordinates).
_SLACK = 1e-6

_forced: ContextVar[str | None] = ContextVar("align3d_neighbours", default=None)


def _checked(name: str, source: str) -> str:
    value = name.strip().lower()
    if value not in BACKENDS:
        raise ConfigError(f"{source} must be one of {', '.join(BACKENDS)}, got {name!r}")
    return value


def neighbour_backend(device: torch.device | str) -> str:
    """``"scipy"`` or ``"torch"``: the neighbour search to use for tensors on ``device``."""
    forced = _forced.get()
    choice = forced or _checked(os.environ.get(BACKEND_ENV, "auto"), f"environment {BACKEND_ENV}")
    if choice != "auto":
        return choice
    return "scipy" if torch.device(device).type == "cpu" else "torch"


@contextmanager
def neighbours_backend(name: str) -> Iterator[None]:
    """Force the neighbour backend (``auto``, ``torch`` or ``scipy``) inside the ``with`` body."""
    token = _forced.set(_checked(name, "neighbours backend"))
    try:
        yield
    finally:
        _forced.reset(token)


def _offsets(device: torch.device) -> torch.Tensor:
    """(9, 2) x, y offsets of the 3 x 3 columns of cells around a cell."""
    d = torch.arange(-1, 2, device=device)
    return torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).reshape(9, 2)


class _Grid:
    """Points binned into cells of side ``h`` (origin ``lo``), sorted by cell key."""

    def __init__(self, points: torch.Tensor, lo: torch.Tensor, dims: torch.Tensor, h: float):
        self.lo, self.h, self.dims = lo, h, dims
        keys = self.keys(self.cells(points)[0])
        self.sorted_keys, self.perm = keys.sort(stable=True)
        self.points = points[self.perm]

    def cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell coordinates (offset by 1, so that every neighbour cell is >= 0) and fractions."""
        t = (x - self.lo) / self.h
        c = t.floor()
        return c.to(torch.int64) + 1, t - c

    def keys(self, cells: torch.Tensor) -> torch.Tensor:
        return (cells[..., 0] * self.dims[1] + cells[..., 1]) * self.dims[2] + cells[..., 2]

    def ranges(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start (M, 9) and length (M, 9) of the runs of sorted points in the 27 cells around."""
        column = cells[:, None, :2] + _offsets(cells.device)  # (M, 9, 2)
        z = cells[:, None, 2:].expand(-1, 9, 1)
        first = self.keys(torch.cat([column, z - 1], -1))
        last = self.keys(torch.cat([column, z + 1], -1))
        start = torch.searchsorted(self.sorted_keys, first)
        end = torch.searchsorted(self.sorted_keys, last, right=True)
        return start, end - start


def _candidates(start: torch.Tensor, count: torch.Tensor, width: int) -> torch.Tensor:
    """(R, width) positions in the sorted points of R queries' 9 runs; -1 past their end."""
    cum = count.cumsum(1)
    j = torch.arange(width, device=start.device).expand(start.shape[0], width).contiguous()
    seg = torch.searchsorted(cum, j, right=True).clamp_(max=8)
    pos = start.gather(1, seg).add_(j).sub_((cum - count).gather(1, seg))
    return pos.masked_fill_(j >= cum[:, -1:], -1)


def _search(queries, n, k, bound2, grid: _Grid, out_d2, out_idx, rows) -> torch.Tensor:
    """Fill ``out_*[rows]`` with each query's k nearest candidates; returns the guaranteed radii."""
    cells, frac = grid.cells(queries)
    reach = 1.0 + torch.minimum(frac, 1.0 - frac).amin(dim=1) - _SLACK
    start, count = grid.ranges(cells)
    total = count.sum(dim=1)
    level = torch.log2(total.clamp_min(1).to(torch.float64)).ceil().to(torch.int64)
    order = level.argsort(stable=True)
    sizes = torch.bincount(level, minlength=1).tolist()
    first = 0
    for lvl, size in enumerate(sizes):
        width = max(2**lvl, k)
        step = max(1, PAIR_BUDGET // width)
        for a in range(first, first + size, step):
            sel = order[a : min(a + step, first + size)]
            pos = _candidates(start[sel], count[sel], width)
            diff = grid.points[pos.clamp(min=0)] - queries[sel, None]
            d2 = diff.mul_(diff).sum(dim=-1)
            d2.masked_fill_((pos < 0) | (d2 >= bound2), math.inf)
            d2, pick = d2.topk(k, dim=1, largest=False)
            idx = grid.perm[pos.gather(1, pick).clamp_(min=0)].masked_fill_(d2.isinf(), n)
            out_d2[rows[sel]], out_idx[rows[sel]] = d2, idx
        first += size
    return reach * grid.h


def knn(
    points: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    *,
    distance_upper_bound: float = math.inf,
    cell: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest ``points`` (N, 3) of every row of ``queries`` (M, 3), on their device.

    Args:
        points, queries: Float coordinates on one device.
        k: Neighbours per query (>= 1); beyond N they are missing.
        distance_upper_bound: Only neighbours closer than this (as cKDTree's).
        cell: First cell side to try, about the expected k-th distance (scene units); None = a
            guess for surface samples, ``extent * sqrt(k / N)``.

    Returns:
        ``dist`` (M, k) in the dtype of ``points``, ascending, inf where missing, and ``index``
        int64 (M, k), N where missing.
    """
    n, m = points.shape[0], queries.shape[0]
    device = points.device
    out_d2 = torch.full((m, k), math.inf, dtype=torch.float64, device=device)
    out_idx = torch.full((m, k), n, dtype=torch.int64, device=device)
    kk = min(k, n)
    if n and m and kk:
        p64, q64 = points.detach().to(torch.float64), queries.detach().to(torch.float64)
        lo = torch.minimum(p64.amin(dim=0), q64.amin(dim=0))
        span = torch.maximum(p64.amax(dim=0), q64.amax(dim=0)) - lo
        extent = float(span.max())
        if extent == 0:
            h = 1.0
        else:
            h = cell if cell is not None and cell > 0 else extent * math.sqrt(kk / n)
            h = max(h, extent / MAX_CELLS)
        bound2 = float(distance_upper_bound) ** 2
        todo = torch.arange(m, device=device)
        while todo.numel():
            final = h >= extent or h * (1.0 - _SLACK) >= distance_upper_bound
            dims = (span / h).floor().to(torch.int64) + 3
            grid = _Grid(p64, lo, dims, h)
            d2 = torch.empty((todo.numel(), kk), dtype=torch.float64, device=device)
            idx = torch.empty((todo.numel(), kk), dtype=torch.int64, device=device)
            reach = torch.empty(todo.numel(), dtype=torch.float64, device=device)
            for a in range(0, todo.numel(), QUERY_CHUNK):
                rows = torch.arange(a, min(a + QUERY_CHUNK, todo.numel()), device=device)
                reach[rows] = _search(q64[todo[rows]], n, kk, bound2, grid, d2, idx, rows)
            out_d2[todo, :kk], out_idx[todo, :kk] = d2, idx
            if final:
                break
            todo = todo[(d2[:, -1] > reach.square()) & (reach < distance_upper_bound)]
            h *= 2.0
    return out_d2.sqrt().to(points.dtype), out_idx
