"""The reference variant in the saved scores and tables, and the protocol fixes of issue 13 (4a-d)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align3d_ad.data import PointCloudSample
from align3d_ad.errors import DatasetFormatError
from align3d_ad.evaluate.reference import cflow_aupro, reference_gt
from align3d_ad.evaluate.runner import plan_evaluation
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.evaluate.tables import combine_runs, to_markdown


def _organised(seed: int, label: int) -> tuple[PointCloudSample, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(10, 10, 3)).astype(np.float32)
    mask = np.zeros((10, 10), dtype=np.uint8)
    if label:
        mask[3:6, 2:7] = 255
    sample = PointCloudSample.from_grid(xyz, mask=mask, label=label, sample_id=f"s{seed}")
    sample.meta["gt_grid"] = mask > 0
    return sample, rng.random(sample.num_points).astype(np.float32)


def test_reference_variant_uses_bilinear_gt_and_the_given_336_map(tmp_path):
    scores = CategoryScores("toy", grid_size=16)
    maps = []
    for seed, label in [(0, 0), (1, 1), (2, 1)]:
        sample, point_scores = _organised(seed, label)
        blurred = np.random.default_rng(seed + 10).random((16, 16)).astype(np.float32)
        maps.append(blurred)
        scores.add(sample, point_scores, 0.5, reference=(blurred, None))
    gts = [reference_gt(_organised(seed, label)[0].meta["gt_grid"], 16)
           for seed, label in [(0, 0), (1, 1), (2, 1)]]  # fmt: skip
    metrics = scores.metrics()
    assert metrics["reference"]["aupro"] == pytest.approx(cflow_aupro(gts, maps), abs=1e-12)
    for a, b in zip(scores.reference_labels, gts):
        np.testing.assert_array_equal(a, b)
    scores.save(tmp_path / "toy.npz")
    back = CategoryScores.load(tmp_path / "toy.npz")
    assert back.metrics() == metrics
    with pytest.raises(DatasetFormatError, match=r"shape \(16, 16\) \(eval.grid_size\)"):
        scores.add(_organised(3, 1)[0], point_scores, 0.5, reference=(np.zeros((8, 8)), None))


def test_reference_variant_without_a_map_is_the_nearest_grid_with_background_zero():
    scores = CategoryScores("toy", grid_size=12)
    for seed, label in [(4, 0), (5, 1)]:
        sample, point_scores = _organised(seed, label)
        scores.add(sample, point_scores, 0.5)
    for ref, grid in zip(scores.reference_scores, scores.grid_scores):
        np.testing.assert_array_equal(ref, grid)


def test_unorganised_reference_variant_is_over_every_point_so_real3d_rows_get_a_p_auroc():
    rng = np.random.default_rng(0)
    scores = CategoryScores("cloud")
    for label in (0, 1):
        labels = np.zeros(40, dtype=bool)
        labels[:6] = bool(label)
        point_scores = rng.random(40) + labels
        sample = PointCloudSample(rng.normal(size=(40, 3)).astype(np.float32),
                                  point_labels=labels, label=label)  # fmt: skip
        scores.add(sample, point_scores, 0.5 + label)
    metrics = scores.metrics()
    assert math.isnan(metrics["grid"]["p_auroc"])
    assert metrics["reference"]["p_auroc"] == 1.0 and math.isnan(metrics["reference"]["aupro"])
    doc = combine_runs({"aux": {"cloud": metrics}}, setting="cross_real3d")
    md = to_markdown(doc)
    assert "| this run | 100.0 | 100.0 | 100.0 | – |" in md
    assert "The `this run` row uses the `reference` point metrics" in md


def _scores(o: float, p: float, a: float) -> dict:
    point = {"p_auroc": p, "aupro": a}
    return {"object": {"o_auroc": o, "o_ap": o}, "foreground": point, "grid": point,
            "reference": point}  # fmt: skip


def test_tables_name_nan_categories_and_state_both_averaging_conventions():
    # one-vs-rest: each auxiliary is left out of its own run, so runs test different categories
    runs = {
        "a": {"b": _scores(0.6, 0.9, math.nan), "c": _scores(0.8, 0.7, 0.5)},
        "b": {"a": _scores(0.4, 0.5, 0.3), "c": _scores(1.0, 0.9, 0.7)},
    }
    doc = combine_runs(runs, setting="mvtec3d_one_vs_rest")
    # categories first: a 0.4, b 0.6, c 0.9 -> 0.6333; runs first: (0.7 + 0.7) / 2 = 0.7
    assert doc["mean"]["object"]["o_auroc"] == pytest.approx((0.4 + 0.6 + 0.9) / 3)
    assert doc["mean_of_runs"]["object"]["o_auroc"] == pytest.approx(0.7)
    assert doc["undefined"] == {v: {"aupro": ["b"]} for v in ("foreground", "grid", "reference")}
    assert doc["mean_count"]["reference"] == {"p_auroc": 3, "aupro": 2}
    assert doc["runs_per_category"] == {"a": 1, "b": 1, "c": 2}
    md = to_markdown(doc)
    assert "AUPRO undefined (–) for b: its mean runs over 2 of 3 categories." in md
    assert "mean over the 1/2 runs that tested it" in md
    assert "| this run | 63.3 |" in md and "| this run, mean of run means | 70.0 |" in md
    assert "## Beside the published numbers (this run: `reference` variant" in md


def test_the_auxiliary_is_left_out_of_its_own_run_even_with_eval_categories(synth_mvtec):
    plan = plan_evaluation("mvtec3d", synth_mvtec, categories=["bagel", "cookie"],
                           exclude=["bagel"], check_files=False)  # fmt: skip
    assert list(plan.refs) == ["cookie"]
    with pytest.raises(Exception, match="no categories left to test"):
        plan_evaluation("mvtec3d", synth_mvtec, categories=["bagel"], exclude=["bagel"],
                        check_files=False)  # fmt: skip
