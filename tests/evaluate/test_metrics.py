"""Object and point AUROC / AP: scikit-learn agreement, pair counting, chance values, errors."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.metrics import average_precision_score, roc_auc_score

from align3d_ad.evaluate import (
    ObjectMetrics,
    PointMetrics,
    UndefinedMetricWarning,
    aupro,
    object_ap,
    object_auroc,
    object_metrics,
    point_auroc,
    point_metrics,
)


def _pair_count_auroc(labels, scores):
    """P(score_pos > score_neg) + P(tie) / 2 over all positive/negative pairs."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (pos.size * neg.size)


def _point_case(seed):
    rng = np.random.default_rng(seed)
    shapes = [(5, 7), (31,), (4, 9)]
    labels = [rng.random(s) < 0.3 for s in shapes]
    scores = [rng.integers(0, 6, size=s) / 5 + 0.2 * y for s, y in zip(shapes, labels)]
    return labels, scores


def test_object_auroc_and_ap_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.random(40) < 0.4
    scores = rng.integers(0, 10, 40) + labels * rng.random(40)
    assert object_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert object_ap(labels.astype(int), scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert object_auroc(labels, scores) == pytest.approx(_pair_count_auroc(labels, scores))


def test_object_auroc_hand_value():
    # Pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4.
    assert object_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


@pytest.mark.parametrize("seed", range(4))
def test_point_auroc_matches_pair_counting_and_sklearn_with_ties(seed):
    labels, scores = _point_case(seed)
    y = np.concatenate([a.ravel() for a in labels])
    s = np.concatenate([a.ravel() for a in scores])
    assert point_auroc(labels, scores) == pytest.approx(_pair_count_auroc(y, s), abs=1e-12)
    assert point_auroc(labels, scores) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_perfect_scores_give_one():
    labels = np.array([0, 1, 0, 1, 1], bool)
    scores = labels * 2.0 - 0.5
    assert object_auroc(labels, scores) == 1.0
    assert object_ap(labels, scores) == 1.0
    assert point_auroc([labels, np.ones(3, bool)], [scores, np.full(3, 9.0)]) == 1.0


def test_constant_scores_give_chance_values():
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 0], bool)
    constant = np.full(labels.shape, 0.3)
    assert object_auroc(labels, constant) == 0.5
    assert object_ap(labels, constant) == pytest.approx(labels.mean())  # AP = prevalence
    assert point_auroc([labels.reshape(2, 4)], [constant.reshape(2, 4)]) == 0.5


@pytest.mark.parametrize("metric", [object_auroc, object_ap, point_auroc])
def test_single_class_warns_and_returns_nan(metric):
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        assert np.isnan(metric(np.ones(4, bool), np.arange(4.0)))
    with pytest.warns(sklearn.exceptions.UndefinedMetricWarning):  # caught by sklearn filters too
        assert np.isnan(metric(np.zeros(4, int), np.arange(4.0)))


def test_object_metrics_dataclass_matches_functions():
    rng = np.random.default_rng(2)
    labels, scores = rng.random(20) < 0.5, rng.random(20)
    got = object_metrics(labels, scores)
    assert isinstance(got, ObjectMetrics)
    assert got.to_dict() == {
        "o_auroc": object_auroc(labels, scores),
        "o_ap": object_ap(labels, scores),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.o_auroc = 0.0  # type: ignore[misc]


def test_point_metrics_matches_functions_and_both_undefined_parts_are_nan():
    labels, scores = _point_case(7)
    regions = [y.astype(int) * 3 for y in labels]  # one region per sample
    got = point_metrics(labels, scores, regions)
    assert isinstance(got, PointMetrics)
    assert got.to_dict() == {
        "p_auroc": pytest.approx(point_auroc(labels, scores), abs=1e-12),
        "aupro": pytest.approx(aupro(labels, scores, regions), abs=1e-12),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        empty = point_metrics([np.zeros(5, bool)], [np.arange(5.0)], [np.zeros(5, int)])
    assert np.isnan(empty.p_auroc) and np.isnan(empty.aupro)
    assert sum(issubclass(w.category, UndefinedMetricWarning) for w in caught) == 2


def test_point_metrics_background_cells_scored_zero_change_only_the_grid_variant():
    # Foreground-only vs full grid with background scored 0: the background adds easy negatives.
    fg_labels = [np.array([True, False, False, True])]
    fg_scores = [np.array([0.2, 0.3, 0.1, 0.9])]
    grid_labels = [np.r_[fg_labels[0], np.zeros(4, bool)]]
    grid_scores = [np.r_[fg_scores[0], np.zeros(4)]]
    assert point_auroc(fg_labels, fg_scores) == pytest.approx(0.75)  # pairs: 3 of 4
    assert point_auroc(grid_labels, grid_scores) == pytest.approx((3 + 4 * 2) / 12)


def test_mismatched_shapes_raise_naming_the_arrays():
    with pytest.raises(ValueError, match=r"labels and scores must both have shape \(B,\)"):
        object_auroc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"scores\[1\] must have the shape of labels\[1\] \(3,\)"):
        point_auroc([np.zeros(2), np.zeros(3)], [np.zeros(2), np.zeros(4)])
    with pytest.raises(ValueError, match="one array per sample of labels"):
        point_auroc([np.zeros(2), np.zeros(3)], [np.zeros(2)])


def test_invalid_labels_and_scores_raise_quoting_the_value():
    with pytest.raises(ValueError, match=r"labels must be bool or 0/1, got values \[255\]"):
        point_auroc([np.array([0, 255, 0])], [np.array([0.1, 0.2, 0.3])])
    with pytest.raises(ValueError, match="scores must be finite, got 1 NaN/inf"):
        object_auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="scores must be real numbers"):
        object_ap([0, 1], ["a", "b"])
