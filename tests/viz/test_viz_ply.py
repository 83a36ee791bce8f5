"""Scored PLY export round trip."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from align3d_ad.data import PointCloudSample
from align3d_ad.data.formats import read_ply
from align3d_ad.errors import ShapeError
from align3d_ad.viz import save_scored_ply


def _sample(with_colors: bool = True) -> PointCloudSample:
    gen = np.random.default_rng(0)
    pts = gen.normal(size=(50, 3)).astype(np.float32)
    colors = gen.random((50, 3)).astype(np.float32) if with_colors else None
    return PointCloudSample(pts, colors=colors, point_labels=np.arange(50) % 7 == 0, sample_id="s")


def test_save_scored_ply_round_trip_with_heat_colours(tmp_path):
    sample = _sample()
    scores = np.linspace(0, 1, 50).astype(np.float32)
    save_scored_ply(tmp_path / "a.ply", sample, scores)
    data = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1), sample.points)
    np.testing.assert_allclose(data["anomaly_score"], scores)
    np.testing.assert_array_equal(data["label"].astype(bool), sample.point_labels)
    jet = np.asarray(matplotlib.colormaps["jet"](scores))[:, :3]
    rgb = np.stack([data["red"], data["green"], data["blue"]], 1).astype(float) / 255
    np.testing.assert_allclose(rgb, jet, atol=0.5 / 255 + 1e-9)


def test_save_scored_ply_sample_colours_and_explicit_labels(tmp_path):
    sample = _sample()
    labels = np.zeros(50, bool)
    labels[3] = True
    save_scored_ply(tmp_path / "b.ply", sample, np.zeros(50), labels=labels, colors="sample")
    data = read_ply(tmp_path / "b.ply")
    assert data["label"].astype(bool).tolist() == labels.tolist()
    np.testing.assert_allclose(data["red"] / 255, sample.colors[:, 0], atol=0.5 / 255 + 1e-6)


def test_save_scored_ply_rejects_bad_input(tmp_path):
    with pytest.raises(ShapeError, match="scores"):
        save_scored_ply(tmp_path / "c.ply", _sample(), np.zeros(49))
    with pytest.raises(ValueError, match="no colours"):
        save_scored_ply(tmp_path / "c.ply", _sample(False), np.zeros(50), colors="sample")
