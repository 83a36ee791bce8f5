"""The torch neighbour paths (what CUDA takes) forced on the CPU give the scipy paths' results.

Point spacing, 3D smoothing and the hidden-point fill (its far path included), then on the
emulated GPU of ``tests/emulated_device.py``: the torch paths keep every tensor on the device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from align3d_ad.render import (
    RenderSettings,
    back_project,
    backproject,
    fill,
    hidden_neighbours,
    point_spacing,
    render_batch,
    smooth_point_scores,
)
from align3d_ad.render.fill import nearest_seeds
from align3d_ad.render.knn import knn, neighbours_backend
from align3d_ad.render.neighbours import (
    _SPREAD,
    _spread_bits_tensor,
    spatial_order,
    spatial_order_tensor,
)
from align3d_ad.render.views import view_preset_from_spec
from emulated_device import emulated_cuda
from pipeline_helpers import fibonacci_sphere


def _both(fn):
    """``fn()`` with the scipy and with the torch backend."""
    with neighbours_backend("scipy"):
        a = fn()
    with neighbours_backend("torch"):
        b = fn()
    return a, b


def _noisy_surface(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    uv = rng.random((n, 2))
    z = 0.1 * np.sin(6 * uv[:, 0]) * np.cos(4 * uv[:, 1])
    return torch.tensor(np.column_stack([uv, z]))


def test_z_order_on_tensors_equals_the_numpy_one():
    assert torch.equal(_spread_bits_tensor(torch.arange(2**16)), _SPREAD)
    cloud = _noisy_surface(5000, 0)
    for dtype in (torch.float64, torch.float32):
        np.testing.assert_array_equal(spatial_order_tensor(cloud.to(dtype)).numpy(),
                                      spatial_order(cloud.to(dtype).numpy()))  # fmt: skip


@pytest.mark.parametrize("n", [300, 9000])  # the whole cloud, and the order-free subsample
def test_point_spacing_is_the_same(n):
    for dtype in (torch.float64, torch.float32):
        pts = _noisy_surface(n, n).to(dtype)
        a, b = _both(lambda pts=pts: point_spacing(pts))
        assert b == pytest.approx(a, rel=1e-12, abs=0) and a > 0
    u, v = np.meshgrid(np.arange(50.0), np.arange(50.0))  # a grid: ties everywhere, same k-th
    grid = torch.tensor(np.stack([u, v, 0 * u], -1).reshape(-1, 3))
    a, b = _both(lambda: point_spacing(grid))
    assert b == pytest.approx(a, rel=1e-12, abs=0)  # torch's CPU sqrt may be 1 ulp off IEEE's


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_smoothing_agrees_within_1e_5(dtype):
    pts = _noisy_surface(4000, 1).to(dtype)
    scores = torch.rand(4000, 2, dtype=dtype)
    a, b = _both(lambda: smooth_point_scores(pts, scores))
    torch.testing.assert_close(b, a, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)
    assert (a - scores).abs().max() > 0.1  # it did smooth
    narrow = _both(lambda: smooth_point_scores(pts, scores[:, 0], sigma=0.01, k=8))
    torch.testing.assert_close(narrow[1], narrow[0], atol=1e-5, rtol=0)


def test_nearest_seeds_equals_scipys_multi_source_dijkstra():
    rng = np.random.default_rng(2)
    n, e = 3000, 9000
    tail, head = rng.integers(0, n, e), rng.integers(0, n, e)
    length = rng.random(e) + 0.01
    seeds = np.unique(rng.integers(0, n, 30))
    graph = coo_matrix((length, (tail, head)), shape=(n, n)).tocsr()
    _, _, expected = dijkstra(graph, directed=False, indices=seeds, return_predecessors=True,
                              min_only=True)  # fmt: skip
    as_t = [torch.from_numpy(a) for a in (tail, head, length, seeds)]
    got = nearest_seeds(*as_t, n).numpy()
    np.testing.assert_array_equal(got, np.where(expected >= 0, expected, -1))
    assert (got == -1).any() and (got >= 0).mean() > 0.9  # unreachable nodes and reached ones


def _spy(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hidden_fill_and_back_projection_are_the_same(monkeypatch, dtype):
    """A sphere seen from one side (a large unseen back: the far path runs) and a patch."""
    sphere = fibonacci_sphere(5000)[np.random.default_rng(1).permutation(5000)]
    points = [torch.tensor(sphere, dtype=dtype), _noisy_surface(800, 2).to(dtype)]
    dijkstras, relaxations = _spy(monkeypatch, backproject, "dijkstra"), _spy(
        monkeypatch, fill, "nearest_seeds"
    )
    maps = torch.rand(2, 1, 3, 16, 16, dtype=dtype)
    results = {}
    for backend in ("scipy", "torch"):
        with neighbours_backend(backend):
            rendering = render_batch(points, view_preset_from_spec([("x", 0)]),
                                     RenderSettings(image_size=64))  # fmt: skip
            results[backend] = hidden_neighbours(rendering, 8), back_project(maps, rendering)
    assert dijkstras == ["dijkstra"] and relaxations == ["nearest_seeds"]  # each path ran once
    (hid_a, nb_a, w_a), values_a = results["scipy"]
    (hid_b, nb_b, w_b), values_b = results["torch"]
    assert hid_a.numel() > 2000 and torch.equal(hid_a, hid_b)
    same = (nb_a.sort(1).values == nb_b.sort(1).values).all(1)
    assert same.float().mean() > 0.999, same.float().mean()  # all but near-ties
    torch.testing.assert_close(w_b, w_a, atol=0, rtol=0)
    for a, b in zip(values_a, values_b):
        close = (a - b).abs().amax(1) <= 1e-5
        assert close.float().mean() > 0.999


def test_torch_paths_stay_on_the_emulated_gpu(monkeypatch):
    """Under auto, device tensors take the torch paths: no numpy of them, no copy to the host,
    and the CPU's numbers for the same forced path."""
    sphere = torch.tensor(fibonacci_sphere(3000)[np.random.default_rng(3).permutation(3000)])
    scores = torch.rand(3000, 2, dtype=torch.float64)
    maps = torch.rand(1, 1, 2, 16, 16, dtype=torch.float64)
    preset, settings = view_preset_from_spec([("x", 0)]), RenderSettings(image_size=48)

    def run(pts, sc, mp, emu=None):
        rendering = render_batch([pts], preset, settings)
        if emu is not None:  # the neighbour searches copy nothing to the host
            emu.transfers.clear()
        out = (point_spacing(pts), smooth_point_scores(pts, sc), hidden_neighbours(rendering, 8),
               back_project(mp, rendering)[0])  # fmt: skip
        assert emu is None or "device to host" not in emu.transfers
        return out

    with neighbours_backend("torch"):
        expected = run(sphere, scores, maps)
    relaxations = _spy(monkeypatch, fill, "nearest_seeds")
    with emulated_cuda(monkeypatch) as emu:
        on_device = [t.to("cuda") for t in (sphere, scores, maps)]
        got = run(*on_device, emu=emu)
        assert all(emu.on_device(t) for t in (got[1], *got[2], got[3]))
        assert emu.violations == []
        got = [got[0], got[1].cpu(), [t.cpu() for t in got[2]], got[3].cpu()]
    assert relaxations == ["nearest_seeds"]
    assert got[0] == expected[0]
    torch.testing.assert_close(got[1], expected[1], atol=0, rtol=0)
    for a, b in zip(got[2], expected[2]):
        assert torch.equal(a, b)
    torch.testing.assert_close(got[3], expected[3], atol=0, rtol=0)


@pytest.mark.cuda
def test_knn_and_the_fill_on_cuda_match_scipy():
    rng = np.random.default_rng(6)
    cloud = rng.random((20000, 3))
    cloud[:, 2] *= 0.02
    queries = np.concatenate([cloud[::5], rng.random((500, 3))])
    dist, idx = knn(torch.from_numpy(cloud).cuda(), torch.from_numpy(queries).cuda(), 16,
                    distance_upper_bound=0.05)  # fmt: skip
    ref_dist, ref_idx = cKDTree(cloud).query(queries, k=16, distance_upper_bound=0.05)
    assert dist.device.type == "cuda"
    np.testing.assert_allclose(dist.cpu().numpy(), ref_dist, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(np.sort(idx.cpu().numpy(), 1), np.sort(ref_idx, 1))
    sphere = torch.tensor(fibonacci_sphere(5000)[rng.permutation(5000)])
    preset, settings = view_preset_from_spec([("x", 0)]), RenderSettings(image_size=64)
    rendering = render_batch([sphere.cuda()], preset, settings)
    gpu = hidden_neighbours(rendering, 8)  # auto: torch
    rendering.cache.clear()
    with neighbours_backend("scipy"):  # the same rendering through the host
        cpu = [t.cpu() for t in hidden_neighbours(rendering, 8)]
    assert gpu[1].device.type == "cuda" and torch.equal(gpu[0].cpu(), cpu[0])
    same = (gpu[1].cpu().sort(1).values == cpu[1].sort(1).values).all(1)
    assert same.float().mean() > 0.999
