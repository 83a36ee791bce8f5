"""Preprocessing: background plane, largest cluster, legacy-nearest resize, unit-sphere scaling."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from align3d_ad.data import PointCloudSample
from align3d_ad.data import preprocess as pre
from align3d_ad.errors import DatasetFormatError
from align3d_ad.synth import list_synth_categories
from align3d_ad.synth.mvtec import mvtec_camera
from align3d_ad.synth.scene import compose, draw_clean_scan

H, W = 40, 48  # DATASETS.md §6.1 preprocessing fixture
BLOCK = (slice(14, 24), slice(16, 28))  # 120 pixels raised 10 mm
PATCH = (slice(10, 13), slice(33, 36))  # 3 x 3 pixels raised 30 mm (< 30 points: noise)
MISSING = [(0, 0), (39, 47), (18, 20), (25, 5)]  # one inside the block


def _fixture_grid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tilted plane z = 0.5 + 0.0002 col, 0.5 mm pitch, a raised block and an isolated patch."""
    r, c = np.indices((H, W))
    xyz = np.stack([(c - 23.5) * 0.0005, (r - 19.5) * 0.0005, 0.5 + 0.0002 * c], -1)
    xyz[BLOCK + (2,)] -= 0.010
    xyz[PATCH + (2,)] -= 0.030
    for i, j in MISSING:
        xyz[i, j] = 0.0
    colors = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[16:19, 18:22] = 255  # on the block
    mask[2:5, 2:5] = 255  # on the plane (removed with it)
    return xyz.astype(np.float32), colors, mask


@pytest.fixture
def plane_scan() -> PointCloudSample:
    xyz, colors, mask = _fixture_grid(np.random.default_rng(0))
    return PointCloudSample.from_grid(xyz, colors=colors, mask=mask, sample_id="fixture", label=1)


def _cells(region: tuple[slice, slice]) -> set[int]:
    grid = np.zeros((H, W), dtype=bool)
    grid[region] = True
    for i, j in MISSING:
        grid[i, j] = False
    return set(np.flatnonzero(grid).tolist())


def test_preprocess_removes_plane_and_patch_keeps_block(plane_scan):
    no_plane = pre.remove_background_plane(plane_scan, seed=0)
    assert set(no_plane.grid_index.tolist()) == _cells(BLOCK) | _cells(PATCH)
    cleaned = pre.keep_largest_cluster(no_plane)
    assert set(cleaned.grid_index.tolist()) == _cells(BLOCK)
    assert (
        cleaned.grid_shape == (H, W) and cleaned.label == 1 and plane_scan.num_points == H * W - 4
    )
    rows = np.searchsorted(
        plane_scan.grid_index, cleaned.grid_index
    )  # same cells in the input sample
    assert np.array_equal(cleaned.points, plane_scan.points[rows])
    assert np.array_equal(cleaned.colors, plane_scan.colors[rows])
    assert np.array_equal(cleaned.point_labels, plane_scan.point_labels[rows])
    assert cleaned.point_labels.sum() == 11  # 3 x 4 block labels minus the missing (18, 20)


def test_remove_background_plane_recovers_the_plane_deterministically(plane_scan):
    a = pre.remove_background_plane(plane_scan, seed=3)
    b = pre.remove_background_plane(plane_scan, seed=3)
    assert (
        np.array_equal(a.points, b.points)
        and a.meta["background_plane"] == b.meta["background_plane"]
    )
    normal, offset = np.array(a.meta["background_plane"][:3]), a.meta["background_plane"][3]
    true = np.array([0.4, 0.0, -1.0]) / np.linalg.norm(
        [0.4, 0.0, -1.0]
    )  # z = 0.5 + 0.4 (x + 0.01175)
    assert abs(abs(normal @ true) - 1.0) < 1e-9
    plane_point = np.array([0.0, 0.0, 0.5 + 0.4 * 0.01175])
    assert abs(normal @ plane_point + offset) < 1e-7


def test_ransac_counts_do_not_depend_on_how_hypotheses_are_batched(monkeypatch):
    rng = np.random.default_rng(5)
    plane = rng.normal(size=(3000, 3)) * [0.05, 0.05, 0.001]
    pts = np.concatenate([plane, rng.normal(size=(900, 3)) * 0.02 + [0, 0, 0.03]])
    fits = []
    for budget in (1, 3900 * 7, 2**18, 2**30):  # one hypothesis a batch ... all at once
        monkeypatch.setattr(pre, "SCORE_BUDGET", budget)
        fits.append(pre.fit_plane_ransac(pts, threshold=0.004, iterations=250, seed=1))
    for normal, offset, count in fits[1:]:
        assert np.array_equal(normal, fits[0][0]) and offset == fits[0][1] and count == fits[0][2]
    normal, offset, count = fits[0]
    assert abs(abs(normal[2]) - 1) < 1e-3  # the plane z = 0 ...
    inliers = np.abs(pts @ normal + offset) < 0.004
    assert count == inliers.sum() and inliers[:3000].mean() > 0.99  # ... and its points


def test_remove_background_plane_refuses_an_already_processed_scan(plane_scan):
    processed = pre.keep_largest_cluster(pre.remove_background_plane(plane_scan))
    with pytest.raises(DatasetFormatError, match="already background-removed"):
        pre.remove_background_plane(processed)


def test_remove_background_plane_uses_all_points_when_unorganised(plane_scan):
    loose = PointCloudSample.from_points(
        plane_scan.points, colors=plane_scan.colors, point_labels=plane_scan.point_labels
    )
    kept = pre.remove_background_plane(loose)
    organised = pre.remove_background_plane(plane_scan)
    assert np.array_equal(kept.points, organised.points) and np.array_equal(
        kept.colors, organised.colors
    )


def _brute_dbscan(points: np.ndarray, radius: float, min_points: int) -> np.ndarray:
    dist = cdist(points, points)
    near = dist <= radius
    core = near.sum(1) >= min_points
    labels = np.full(len(points), -1)
    _, comp = connected_components(near[np.ix_(core, core)], directed=False)
    labels[core] = comp
    core_idx = np.flatnonzero(core)
    for i in np.flatnonzero(~core):  # brute force on purpose (reference)
        d = dist[i, core_idx]
        if len(d) and d.min() <= radius:
            labels[i] = labels[core_idx[np.argmin(d)]]
    return labels


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist())) and ((a < 0) == (b < 0)).all()


@pytest.mark.parametrize("budget", [pre.PAIR_BUDGET, 97])  # 97 forces many chunks
def test_cluster_points_matches_brute_force_dbscan(monkeypatch, budget):
    monkeypatch.setattr(pre, "PAIR_BUDGET", budget)
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, (6, 3))
    points = np.concatenate([c + rng.normal(0, 0.03, (rng.integers(5, 60), 3)) for c in centres])
    points = np.concatenate([points, rng.uniform(0, 1, (40, 3))])
    labels = pre.cluster_points(points, radius=0.05, min_points=6)
    expected = _brute_dbscan(points, 0.05, 6)
    assert (labels >= 0).any() and (labels < 0).any()
    assert _same_partition(labels, expected)


def test_keep_largest_cluster_keeps_everything_without_clusters(caplog):
    sample = PointCloudSample(np.arange(30, dtype=np.float32).reshape(10, 3))
    with caplog.at_level(logging.WARNING):
        kept = pre.keep_largest_cluster(sample, radius=0.1, min_points=3)
    assert np.array_equal(kept.points, sample.points) and "no DBSCAN cluster" in caplog.text


@pytest.mark.parametrize(
    "shape,size",
    [
        ((40, 48), 224),
        ((800, 600), 224),
        ((106, 260), 100),
        ((351, 372), 336),
        ((12, 16), 5),
        ((7, 3), 10),
        ((37, 53), 336),
    ],
)
def test_grid_resize_index_equals_torch_nearest(shape, size):
    index = torch.arange(shape[0] * shape[1], dtype=torch.float32).reshape(1, 1, *shape)
    expected = torch.nn.functional.interpolate(index, size=(size, size), mode="nearest")
    assert np.array_equal(
        pre.grid_resize_index(shape, size), expected.reshape(-1).numpy().astype(np.int64)
    )


def _take(grid: np.ndarray, src: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, ...) grid whose cell k is cell src[k] of ``grid`` (H, W, ...)."""
    flat = grid.reshape(H * W, *grid.shape[2:])
    return flat[src].reshape(size, size, *grid.shape[2:])


def test_resize_grid_resamples_points_colours_and_labels_together():
    xyz, colors, mask = _fixture_grid(np.random.default_rng(2))
    sample = PointCloudSample.from_grid(xyz, colors=colors, mask=mask, category="c")
    for size in (17, 64):
        resized = pre.resize_grid(sample, size)
        src = pre.grid_resize_index((H, W), size)
        expected = PointCloudSample.from_grid(
            _take(xyz, src, size), colors=_take(colors, src, size), mask=_take(mask, src, size)
        )
        assert resized.grid_shape == (size, size) and resized.category == "c"
        assert np.array_equal(resized.grid_index, expected.grid_index)  # missing cells stay missing
        assert np.array_equal(resized.points, expected.points)
        assert np.array_equal(resized.colors, expected.colors)
        assert np.array_equal(resized.point_labels, expected.point_labels)
    with pytest.raises(ValueError, match="organised"):
        pre.resize_grid(PointCloudSample(xyz.reshape(-1, 3)[1:]), 8)


def test_normalise_to_unit_sphere_round_trips():
    points = np.random.default_rng(3).normal(5.0, 2.0, (200, 3))
    unit, centre, scale = pre.normalise_to_unit_sphere(points)
    assert unit.dtype == np.float32 and np.isclose(np.linalg.norm(unit, axis=1).max(), 1.0)
    assert np.allclose(unit.mean(0), 0.0, atol=1e-6)
    assert np.allclose(unit * scale + centre, points, atol=1e-5)
    single, _, one = pre.normalise_to_unit_sphere(np.ones((1, 3)))
    assert one == 1.0 and np.array_equal(single, np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("category", list_synth_categories())
def test_btf_recipe_isolates_synthetic_objects(category):
    camera, pitch = mvtec_camera(category, True)
    rng = np.random.default_rng([9, len(category)])
    clean = draw_clean_scan(category, camera, rng, distance=0.5, pitch=pitch, dropouts=True)
    scan = compose(clean)
    kept = pre.keep_largest_cluster(
        pre.remove_background_plane(PointCloudSample.from_grid(scan.xyz))
    )
    cells = np.zeros(scan.valid.size, dtype=bool)
    cells[kept.grid_index] = True
    high = ((clean.height > 0.0055) & scan.valid).reshape(-1)  # clear of the 5 mm cut
    low = ((clean.height < 0.0045) & scan.valid).reshape(-1)  # background and low rims
    assert not (cells & low).any()
    assert cells[high].mean() > 0.95
