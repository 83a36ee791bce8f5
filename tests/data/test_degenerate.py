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


def test_coordinates_far_from_the_origin_warn(caplog):
    near = _blob(400).astype(np.float64)
    with caplog.at_level(logging.WARNING, logger="align3d_ad.data.prepare"):
        prepare_sample(PointCloudSample(near, source=SOURCE), DataConfig())
        assert not caplog.records
        prepare_sample(PointCloudSample(near + 1e4, source=SOURCE), DataConfig())
    (record,) = caplog.records
    assert record.getMessage().startswith(f"{SOURCE}: coordinates reach 1e+04 but the cloud spans")
    assert "centre the cloud before saving it" in record.getMessage()


def test_huge_and_tiny_units_are_scored_not_refused():
    for factor in (1e30, 1e-30):
        prep = prepare_sample(PointCloudSample(_blob(100) * np.float32(factor)), DataConfig())
        assert prep.sample.num_points == 100
