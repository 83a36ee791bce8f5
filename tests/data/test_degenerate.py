"""Degenerate clouds (issue 12): refused with one line naming the sample, never scored constant."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from align3d_ad.config import MIN_CLOUD_POINTS, DataConfig
from align3d_ad.data import PointCloudSample, load_point_cloud, prepare_sample
from align3d_ad.errors import DatasetFormatError

SOURCE = Path("scans") / "part.ply"


def _blob(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.02, size=(n, 3)).astype(np.float32)


def _refusal(sample: PointCloudSample) -> str:
    with pytest.raises(DatasetFormatError) as info:
        prepare_sample(sample, DataConfig())
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("n", [1, 2, 5, 10, MIN_CLOUD_POINTS - 1])
def test_too_few_points_are_refused_naming_the_file(n):
    message = _refusal(PointCloudSample(_blob(n), source=SOURCE))
    point_word = "point" if n == 1 else "points"
    assert message.startswith(f"{SOURCE}: has {n} valid {point_word}; at least {MIN_CLOUD_POINTS}")


def test_the_minimum_is_enough():
    prep = prepare_sample(PointCloudSample(_blob(MIN_CLOUD_POINTS)), DataConfig())
    assert prep.sample.num_points == MIN_CLOUD_POINTS


def test_identical_points_are_refused():
    points = np.tile(np.float32([[0.1, -2.0, 3.5]]), (500, 1))
    message = _refusal(PointCloudSample(points, category="bagel", sample_id="test/crack/007"))
    assert message == (
        "bagel/test/crack/007: all 500 points are the same point (0.1, -2, 3.5); "
        "a cloud with no extent cannot be rendered or scored"
    )


def test_nan_points_given_directly_are_refused():
    points = _blob(100)
    points[[3, 50], 1] = [np.nan, np.inf]
    message = _refusal(PointCloudSample(points, sample_id="scan-7"))
    assert message.startswith("scan-7: 2 of 100 points are NaN or inf; drop them first")


def test_a_file_with_too_few_valid_rows_names_the_file(tmp_path):
    path = tmp_path / "few.npy"
    points = _blob(12)
    points[:4] = np.nan  # 8 valid rows left
    np.save(path, points)
    message = _refusal(load_point_cloud(path))
    assert message.startswith(f"{path}: has 8 valid points")


def test_a_background_cut_that_leaves_too_few_points_keeps_the_whole_scan():
    """A big organised scan is never refused for what its background removal left."""
    r, c = np.mgrid[0:40, 0:40].astype(np.float32)
    xyz = np.stack([c * 1e-3, r * 1e-3, np.full_like(r, 0.5)], -1)  # a bare plane
    prep = prepare_sample(PointCloudSample.from_grid(xyz), DataConfig())
    assert prep.sample.num_points == 1600


def test_float32_coordinates_far_from_the_origin_warn(caplog):
    near = _blob(400)
    with caplog.at_level(logging.WARNING, logger="align3d_ad.data.prepare"):
        prepare_sample(PointCloudSample(near, source=SOURCE), DataConfig())
        assert not caplog.records
        prepare_sample(PointCloudSample(near + np.float32(1e4), source=SOURCE), DataConfig())
    (record,) = caplog.records
    assert record.getMessage().startswith(f"{SOURCE}: coordinates reach 1e+04 but the cloud spans")
    assert "centre the cloud before saving it" in record.getMessage()


def test_float64_coordinates_far_from_the_origin_keep_their_detail(caplog):
    """A float64 scan in a far frame (a map, a plant) is stored relative to an origin."""
    near = _blob(400).astype(np.float64)  # a part ~10 cm across
    far = near + np.array([512_345.678, 6_123_456.789, 312.5])  # e.g. UTM metres
    sample = PointCloudSample(far, source=SOURCE)
    assert sample.origin is not None and sample.points.dtype == np.float32
    np.testing.assert_allclose(sample.coordinates(), far, rtol=0, atol=1e-8)  # float32 of 0.1 m
    lost = far.astype(np.float32).astype(np.float64)  # what a float32 cast would keep
    assert np.abs(lost - far).max() > 0.1  # decimetres gone: the shape would be noise
    spread = near - near.mean(axis=0)
    kept = sample.points - sample.points.mean(axis=0)
    np.testing.assert_allclose(kept, spread, atol=1e-8)  # the shape is the same
    with caplog.at_level(logging.WARNING, logger="align3d_ad.data.prepare"):
        prep = prepare_sample(sample, DataConfig())
    assert not caplog.records and prep.original.origin is sample.origin
    # near the origin, or float32 already: no origin
    assert PointCloudSample(near).origin is None
    assert PointCloudSample(far.astype(np.float32)).origin is None


def test_a_far_float64_file_comes_back_with_its_coordinates(tmp_path):
    from align3d_ad.data import read_ply, write_ply
    from align3d_ad.viz.ply import save_scored_ply

    far = _blob(300).astype(np.float64) + np.array([7.5e5, -4.25e6, 1.0e3])
    for name in ("cloud.ply", "cloud.npy", "cloud.xyz"):
        path = tmp_path / name
        if name.endswith(".ply"):
            write_ply(path, far)
            assert b"property double x" in path.read_bytes()[:200]
        elif name.endswith(".npy"):
            np.save(path, far)
        else:
            np.savetxt(path, far, fmt="%.17g")
        sample = load_point_cloud(path)
        assert sample.origin is not None, name
        np.testing.assert_allclose(sample.coordinates(), far, rtol=0, atol=1e-8)
        scored = save_scored_ply(tmp_path / f"scored_{name}.ply", sample, np.zeros(300))
        back = read_ply(scored)
        again = np.stack([back[a] for a in "xyz"], axis=1)
        assert again.dtype == np.float64
        np.testing.assert_allclose(again, far, rtol=0, atol=1e-8)


def test_huge_and_tiny_units_are_scored_not_refused():
    for factor in (1e30, 1e-30):
        prep = prepare_sample(PointCloudSample(_blob(100) * np.float32(factor)), DataConfig())
        assert prep.sample.num_points == 100
