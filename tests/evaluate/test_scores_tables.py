"""Saved scores, the two point-metric variants, and the result tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align3d_ad.data import PointCloudSample
from align3d_ad.evaluate import aupro, object_auroc, point_auroc
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.evaluate.tables import combine_runs, read_results, to_markdown, write_results


def _grid_sample(seed: int, label: int) -> tuple[PointCloudSample, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = 6, 8
    xyz = rng.normal(size=(h, w, 3)).astype(np.float32)
    xyz[0, :3] = 0  # missing points
    mask = np.zeros((h, w), dtype=np.uint8)
    if label:
        mask[2:4, 3:5] = 255
        mask[0, 0] = 255  # a gt pixel on a missing point
    sample = PointCloudSample.from_grid(xyz, mask=mask, label=label, sample_id=f"s{seed}")
    sample.meta["gt_grid"] = mask > 0
    scores = rng.random(sample.num_points).astype(np.float32)
    foreground = np.ones(sample.num_points, dtype=bool)
    foreground[:5] = False  # "background" removed by preprocessing
    return sample, scores, foreground


def test_foreground_variant_drops_removed_normal_points_keeps_anomalous():
    scores_ = CategoryScores("toy", grid_size=12)
    kept_labels, kept_scores = [], []
    for seed, label in [(0, 0), (1, 1), (2, 1)]:
        sample, scores, fg = _grid_sample(seed, label)
        scores[~fg] = 0.0
        scores_.add(sample, scores, float(scores.max()), foreground=fg)
        keep = fg | sample.point_labels
        kept_labels.append(sample.point_labels[keep])
        kept_scores.append(scores[keep])
    metrics = scores_.metrics()
    assert metrics["foreground"]["p_auroc"] == pytest.approx(point_auroc(kept_labels, kept_scores))
    assert metrics["object"]["o_auroc"] == pytest.approx(
        object_auroc([0, 1, 1], scores_.object_scores)
    )
    # grid variant: every cell of the resized grid, background and missing points scored 0
    assert scores_.grid_scores[0].shape == (12, 12)
    grid_labels = np.stack(scores_.grid_labels)
    # legacy nearest 6x8 -> 12x12: source row = floor(r / 2), source col = floor(c * 2 / 3); the
    # 2x2 blob (rows 2-3, cols 3-4) covers 4 x 3 cells, the missing-point pixel (0, 0) 2 x 2 cells
    assert grid_labels[1].sum() == 4 * 3 + 2 * 2
    assert metrics["grid"]["aupro"] == pytest.approx(aupro(scores_.grid_labels, scores_.grid_scores))


def test_scores_round_trip_through_npz(tmp_path):
    scores_ = CategoryScores("toy")
    for seed, label in [(3, 0), (4, 1)]:
        sample, scores, fg = _grid_sample(seed, label)
        scores_.add(sample, scores, float(seed), foreground=fg)
    scores_.save(tmp_path / "toy.npz")
    back = CategoryScores.load(tmp_path / "toy.npz")
    assert back.sample_ids == scores_.sample_ids and back.labels == scores_.labels
    for a, b in zip(back.point_scores, scores_.point_scores):
        np.testing.assert_array_equal(a, b)
    assert back.metrics() == scores_.metrics()


def test_unorganised_samples_have_no_grid_variant():
    rng = np.random.default_rng(0)
    scores_ = CategoryScores("cloud")
    for label in (0, 1):
        pts = rng.normal(size=(50, 3)).astype(np.float32)
        labels = np.zeros(50, dtype=bool)
        labels[:5] = bool(label)
        sample = PointCloudSample(pts, point_labels=labels, label=label)
        scores_.add(sample, rng.random(50), 0.5 + label)
    metrics = scores_.metrics()
    assert math.isnan(metrics["grid"]["p_auroc"]) and math.isnan(metrics["grid"]["aupro"])
    assert metrics["object"]["o_auroc"] == 1.0


def test_tables_average_runs_and_format_like_papers(tmp_path):
    runs = {
        "a": {"x": {"object": {"o_auroc": 0.5, "o_ap": 0.6}, "foreground": {"p_auroc": 0.9, "aupro": 0.7}}},
        "b": {"x": {"object": {"o_auroc": 1.0, "o_ap": 0.8}, "foreground": {"p_auroc": math.nan, "aupro": 0.5}},
              "y": {"object": {"o_auroc": 0.25, "o_ap": 0.4}, "foreground": {"p_auroc": 0.6, "aupro": 0.3}}},
    }  # fmt: skip
    doc = combine_runs(runs, setting="mvtec3d_one_vs_rest", random_weights=True)
    assert doc["categories"]["x"]["object"]["o_auroc"] == pytest.approx(0.75)
    assert doc["categories"]["x"]["foreground"]["p_auroc"] == pytest.approx(0.9)  # NaN ignored
    assert doc["mean"]["object"]["o_auroc"] == pytest.approx((0.75 + 0.25) / 2)
    md = to_markdown(doc)
    assert "| x | 75.0 | 70.0 | 90.0 | 60.0 |" in md
    assert "| PointAD | 82.0 | 94.2 | 95.5 | 84.4 |" in md and "not comparable" in md
    write_results(tmp_path, doc)
    back = read_results(tmp_path / "metrics.json")
    assert back["categories"]["y"] == doc["categories"]["y"]
    assert math.isnan(back["runs"]["b"]["categories"]["x"]["foreground"]["p_auroc"])
    assert (tmp_path / "metrics.csv").read_text().count("\n") > 10
