"""The torch k-nearest-neighbour search against cKDTree, and the per-device backend choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from align3d_ad.errors import ConfigError
from align3d_ad.render.knn import BACKEND_ENV, knn, neighbour_backend, neighbours_backend


def _scipy(points: np.ndarray, queries: np.ndarray, k: int, bound: float = math.inf):
    dist, idx = cKDTree(points).query(queries, k=k, distance_upper_bound=bound)
    return dist.reshape(len(queries), k), idx.reshape(len(queries), k)


def _assert_same_up_to_ties(points, queries, got, expected, atol=1e-6):
    """Equal distances; equal index sets of the neighbours closer than the k-th; true distances."""
    (dist, idx), (dist_ref, idx_ref) = (tuple(t.numpy() for t in got)), expected
    np.testing.assert_allclose(dist, dist_ref, atol=atol, rtol=0)
    assert idx.dtype == np.int64 and dist.dtype == points.dtype
    n = len(points)
    found = idx < n
    np.testing.assert_array_equal(found, idx_ref < n)
    np.testing.assert_array_equal(np.isinf(dist), ~found)
    true = np.linalg.norm(points[np.minimum(idx, n - 1)] - queries[:, None], axis=-1)
    np.testing.assert_allclose(np.where(found, true, np.inf), dist, atol=atol, rtol=0)
    assert (np.sort(idx, 1)[:, 1:] != np.sort(idx, 1)[:, :-1])[found[:, 1:]].all()  # distinct
    strict = dist < dist[:, -1:] - atol  # neighbours that no tie can swap
    for row in np.flatnonzero(strict.any(1)):
        assert set(idx[row, strict[row]]) == set(idx_ref[row, strict[row]]), row


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 8, 16])
def test_random_clouds_match_ckdtree(dtype, k):
    rng = np.random.default_rng(k)
    points = rng.random((3000, 3)).astype(dtype)
    points[:1000, 2] *= 0.01  # a dense slab and a sparse volume
    queries = np.concatenate([points[::7], rng.normal(0.5, 0.6, (300, 3)).astype(dtype)])
    got = knn(torch.from_numpy(points), torch.from_numpy(queries), k)
    dist, idx = _scipy(points, queries, k)
    _assert_same_up_to_ties(points, queries, got, (dist, idx))
    distinct = np.diff(dist, axis=1).min(axis=1) > 1e-6 if k > 1 else np.ones(len(dist), bool)
    np.testing.assert_array_equal(got[1].numpy()[distinct], idx[distinct])


def test_a_plane_grid_with_exact_ties():
    u, v = np.meshgrid(np.arange(40.0), np.arange(30.0))
    points = np.stack([u, v, np.zeros_like(u)], -1).reshape(-1, 3)
    queries = np.concatenate([points, points[::5] + [0.5, 0.5, 0.0]])  # 4-way ties at the centres
    for k in (5, 9, 12):
        got = knn(torch.from_numpy(points), torch.from_numpy(queries), k)
        _assert_same_up_to_ties(points, queries, got, _scipy(points, queries, k), atol=1e-12)
        assert got[0][:len(points), 0].abs().max() == 0  # each grid point finds itself first


def test_duplicates_and_k_beyond_the_number_of_points():
    rng = np.random.default_rng(3)
    base = rng.random((50, 3))
    points = np.concatenate([base, base, base[:10]])  # every point two or three times
    got = knn(torch.from_numpy(points), torch.from_numpy(base), 6)
    _assert_same_up_to_ties(points, base, got, _scipy(points, base, 6), atol=1e-12)
    assert (got[0][:, :2] == 0).all()
    few = points[:4]
    dist, idx = knn(torch.from_numpy(few), torch.from_numpy(base), 7)
    ref_dist, ref_idx = _scipy(few, base, 7)
    np.testing.assert_array_equal(idx[:, 4:].numpy(), 4)  # missing: index N, distance inf
    assert torch.isinf(dist[:, 4:]).all() and (ref_idx[:, 4:] == 4).all()
    _assert_same_up_to_ties(few, base, (dist, idx), (ref_dist, ref_idx))


def test_distance_upper_bound_is_exclusive_as_scipys():
    points = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [3, 0, 0]])
    queries = np.zeros((1, 3))
    dist, idx = knn(torch.from_numpy(points), torch.from_numpy(queries), 4, distance_upper_bound=2.0)
    assert idx.tolist() == [[0, 1, 4, 4]] and dist.tolist() == [[0.0, 1.0, math.inf, math.inf]]
    assert _scipy(points, queries, 4, 2.0)[1].tolist() == [[0, 1, 4, 4]]
    rng = np.random.default_rng(4)
    cloud = rng.random((4000, 3))
    for bound in (0.02, 0.06, 0.3):
        got = knn(torch.from_numpy(cloud), torch.from_numpy(cloud[:500]), 10, distance_upper_bound=bound)
        _assert_same_up_to_ties(cloud, cloud[:500], got, _scipy(cloud, cloud[:500], 10, bound))


def test_a_bad_cell_guess_and_far_queries_are_still_exact():
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.random((2000, 3)) * 0.01, rng.random((200, 3)) * 10 + 50])
    queries = np.concatenate([points[::9], [[-100.0, 0.0, 0.0], [30.0, 30.0, 30.0]]])
    for cell in (1e-7, 0.001, 100.0, None):
        got = knn(torch.from_numpy(points), torch.from_numpy(queries), 12, cell=cell)
        _assert_same_up_to_ties(points, queries, got, _scipy(points, queries, 12))


def test_degenerate_inputs():
    same = torch.ones(5, 3, dtype=torch.float64)
    dist, idx = knn(same, same[:2], 3)
    assert dist.tolist() == [[0.0] * 3] * 2 and (idx < 5).all()
    dist, idx = knn(torch.zeros(0, 3), torch.zeros(2, 3), 2)
    assert idx.tolist() == [[0, 0], [0, 0]] and torch.isinf(dist).all()
    dist, idx = knn(same, torch.zeros(0, 3, dtype=torch.float64), 2)
    assert dist.shape == idx.shape == (0, 2)


def test_backend_choice_per_device_and_forced(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert neighbour_backend("cpu") == "scipy"
    assert neighbour_backend(torch.device("cuda", 0)) == "torch"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert neighbour_backend("cpu") == "torch"
    with neighbours_backend("scipy"):  # the context manager wins over the environment
        assert neighbour_backend("cpu") == neighbour_backend("cuda") == "scipy"
        with neighbours_backend("auto"):
            assert (neighbour_backend("cpu"), neighbour_backend("cuda")) == ("scipy", "torch")
    assert neighbour_backend("cpu") == "torch"
    monkeypatch.setenv(BACKEND_ENV, " Scipy ")
    assert neighbour_backend("cuda") == "scipy"
    monkeypatch.setenv(BACKEND_ENV, "faiss")
    with pytest.raises(ConfigError, match=r"^environment ALIGN3D_NEIGHBOURS must be one of auto, "
                                          r"torch, scipy, got 'faiss'$"):  # fmt: skip
        neighbour_backend("cpu")
    with pytest.raises(ConfigError, match="neighbours backend must be one of"), neighbours_backend(
        "gpu"
    ):
        pass
