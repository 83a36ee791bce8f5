"""The hidden-point fill of :mod:`.backproject` in torch, on the points' device (no host round trip).

Step for step the scipy path of :func:`.backproject.hidden_neighbours` (read it first): a bounded
exact kNN from hidden to visible points, a kNN graph of the far hidden points, the nearest seed of
every node along that graph, then the k nearest of the seeds' sources. The searches are
:func:`.knn.knn`; scipy's multi-source Dijkstra becomes :func:`nearest_seeds`, an iterated
min-plus relaxation (Bellman-Ford, ``scatter_reduce("amin")`` over the edges, both directions,
out of the nodes that improved in the previous round, carrying each node's seed) until no distance
changes. Both find the shortest path lengths exactly (the same float sums along the same paths);
where two seeds are equally far the relaxation takes the lower row of those offered in the round
that set the distance, Dijkstra the one it settles first, so on such ties the fill may use other
(equally near) sources. There are as many rounds as the longest shortest path has hops (about the
unseen region's width in point spacings), each costing the edges of the nodes that improved.
"""

from __future__ import annotations

import math

import torch

from .knn import knn

#: Far hidden points processed at once, on both paths (bounds the candidate temporaries).
FILL_CHUNK = 65536
#: First cell of the graph search, in point spacings (about the 9th neighbour's distance).
GRAPH_CELL_SPACINGS = 2.0


def nearest_seeds(
    tail: torch.Tensor, head: torch.Tensor, length: torch.Tensor, seeds: torch.Tensor, n: int
) -> torch.Tensor:
    """The seed nearest to every node along an undirected graph (-1 where none is reachable).

    Args:
        tail, head: int64 (E,) edge ends; ``length`` (E,) > 0 their lengths.
        seeds: int64 (S,) distinct seed nodes.
        n: Number of nodes.

    Returns:
        int64 (n,): as ``scipy.sparse.csgraph.dijkstra(..., indices=seeds, min_only=True)``'s
        ``sources`` (up to ties), -1 for unreachable nodes.
    """
    device = tail.device
    src, dst = torch.cat([tail, head]), torch.cat([head, tail])
    weight = torch.cat([length, length]).to(torch.float64)
    src, by_src = src.sort(stable=True)  # edges of a node are contiguous
    dst, weight = dst[by_src], weight[by_src]
    degree = torch.bincount(src, minlength=n)
    first = degree.cumsum(0) - degree
    dist = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    label = torch.full((n,), -1, dtype=torch.int64, device=device)
    dist[seeds] = 0.0
    label[seeds] = seeds
    none = torch.full((n,), n, dtype=torch.int64, device=device)
    active = seeds
    while active.numel():
        # Only edges out of the nodes that changed last round can shorten a path (Bellman-Ford
        # on the frontier): the work is O(edges x times a node improves), not O(edges x rounds).
        deg = degree[active]
        total = int(deg.sum())
        if total == 0:
            break
        owner = torch.repeat_interleave(torch.arange(active.numel(), device=device), deg,
                                        output_size=total)  # fmt: skip
        edge = first[active][owner] + torch.arange(total, device=device) - (deg.cumsum(0) - deg)[owner]
        u, v = src[edge], dst[edge]
        reach = dist[u] + weight[edge]
        new = dist.scatter_reduce(0, v, reach, "amin", include_self=True)
        changed = new < dist
        best = (reach == new[v]) & changed[v]  # edges giving a changed node its new distance
        offer = torch.where(best, label[u], n)
        label = torch.where(changed, none.scatter_reduce(0, v, offer, "amin"), label)
        dist = new
        active = torch.nonzero(changed).squeeze(1)
    return label


def _nearest_sources(
    points: torch.Tensor, rows: torch.Tensor, candidates: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`.backproject._nearest_sources`, on tensors: nearest (M, k) (-1 pad), counts."""
    cand = candidates.sort(dim=1).values  # equal rows become adjacent
    invalid = cand < 0
    invalid[:, 1:] |= cand[:, 1:] == cand[:, :-1]
    safe = cand.clamp_min(0)
    dist = torch.zeros(cand.shape, dtype=points.dtype, device=points.device)
    for axis in range(3):  # the numpy path's order of operations (same sums, same ties)
        step = points[:, axis][safe]
        step -= points[:, axis][rows][:, None]
        dist += step * step
    dist[invalid] = math.inf
    if dist.shape[1] < k:
        dist = torch.nn.functional.pad(dist, (0, k - dist.shape[1]), value=math.inf)
        cand = torch.nn.functional.pad(cand, (0, k - cand.shape[1]), value=-1)
    best, order = dist.topk(k, dim=1, largest=False)
    found = best.isfinite()
    nearest = cand.gather(1, order).masked_fill_(~found, -1)
    return nearest, found.sum(dim=1)


def _distinct_seeds(seed: torch.Tensor) -> torch.Tensor:
    """Rows of seeds with the distinct ones first, descending, -1 after them."""
    seed = seed.sort(dim=1, descending=True).values
    seed[:, 1:][seed[:, 1:] == seed[:, :-1]] = -1
    return seed.sort(dim=1, descending=True).values


def fill_sources(
    points: torch.Tensor,
    vis: torch.Tensor,
    hid: torch.Tensor,
    k: int,
    radius: float,
    spacing: float,
    graph_neighbours: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`.backproject._fill_sources` on tensors (see the module docstring).

    Returns:
        ``sources`` int64 (H, k) visible rows (-1 padding) and their number (H,) per hidden point.
    """
    device = points.device
    n_h = hid.numel()
    kk = min(k, vis.numel())
    visible = points[vis]
    sources = torch.full((n_h, k), -1, dtype=torch.int64, device=device)
    counts = torch.full((n_h,), kk, dtype=torch.int64, device=device)
    # 1. Exact: the k nearest visible points, when all lie within ``radius`` (a bounded search).
    dist, nn = knn(visible, points[hid], kk, distance_upper_bound=radius, cell=radius / 4)
    near = dist[:, -1].isfinite()
    sources[near, :kk] = vis[nn[near]]
    del dist, nn
    far = torch.nonzero(~near).squeeze(1)
    if far.numel() and bool(near.any()) and kk == k:
        # 2. Far points: the sources of their seeds (nearest exactly filled points along the kNN
        # graph of the hidden points) and of their graph neighbours' seeds; the k nearest in 3D.
        counts[far] = 0
        hidden = points[hid].to(torch.float64)  # float64 lengths, as cKDTree's
        d, graph = knn(
            hidden, hidden[far], min(graph_neighbours + 1, n_h), cell=GRAPH_CELL_SPACINGS * spacing
        )
        length = d.clamp_min(radius * 1e-9).reshape(-1)  # zero lengths as the scipy path
        tail = far[:, None].expand_as(graph).reshape(-1)
        seeds = torch.unique(graph[near[graph]])
        seed_of = torch.full((n_h,), -1, dtype=torch.int64, device=device)
        if seeds.numel():
            seed_of = nearest_seeds(tail, graph.reshape(-1), length, seeds, n_h)
        seed_of[near] = torch.nonzero(near).squeeze(1)
        seed = _distinct_seeds(seed_of[torch.cat([far[:, None], graph], dim=1)])
        distinct = (seed >= 0).sum(dim=1)
        one = distinct == 1
        sources[far[one]], counts[far[one]] = sources[seed[one, 0]], counts[seed[one, 0]]
        many = torch.nonzero(distinct > 1).squeeze(1)
        if many.numel():
            seed = seed[many, : int(distinct.max())]
        for start in range(0, many.numel(), FILL_CHUNK):  # chunks bound the temporaries
            part = many[start : start + FILL_CHUNK]
            cut = seed[start : start + FILL_CHUNK]
            cand = torch.where(cut[..., None] >= 0, sources[cut.clamp_min(0)], -1)
            got, number = _nearest_sources(points, hid[far[part]], cand.reshape(len(part), -1), k)
            sources[far[part]], counts[far[part]] = got, number
        near[far[counts[far] > 0]] = True  # the rest: parts of the cloud no path joins to a seed
    left = torch.nonzero(~near).squeeze(1)
    if left.numel():
        _, nn = knn(visible, points[hid[left]], kk, cell=radius)
        sources[left, :kk] = vis[nn]
        counts[left] = kk
    return sources, counts
