"""AUPRO: hand-computed cases, chance values, and agreement with straightforward loop versions."""

from __future__ import annotations

from bisect import bisect

import numpy as np
import pytest
import torch
from scipy import ndimage

from align3d_ad.evaluate import (
    UndefinedMetricWarning,
    aupro,
    grid_regions,
    point_metrics,
    pro_curve,
)

H, W = 6, 8  # non-square on purpose


# ----------------------------------------------------------------------------- brute force


def _flatten(labels, scores, regions):
    """Negative scores and the list of region score arrays, by plain loops over samples/regions."""
    negatives, region_scores, all_scores = [], [], []
    for y, s, r in zip(labels, scores, regions):
        y, s, r = np.asarray(y).ravel(), np.asarray(s, dtype=float).ravel(), np.asarray(r).ravel()
        negatives.append(s[y == 0])
        all_scores.append(s)
        for k in sorted(set(r.tolist()) - {0}):
            region_scores.append(s[r == k])
    return np.concatenate(negatives), region_scores, np.concatenate(all_scores)


def _clipped_area(points, max_fpr):
    """Area under a polyline given as (fpr, pro) points, from 0 to max_fpr, by a segment loop."""
    area = 0.0
    for (f0, p0), (f1, p1) in zip(points, points[1:]):
        if f0 >= max_fpr:
            break
        if f1 <= max_fpr:
            area += (f1 - f0) * (p0 + p1) / 2
        else:
            p_at = p0 + (p1 - p0) * (max_fpr - f0) / (f1 - f0)
            area += (max_fpr - f0) * (p0 + p_at) / 2
    return area / max_fpr


def brute_exact(labels, scores, regions, max_fpr=0.3):
    """Every distinct score (and -inf) as a threshold; points sorted; clipped trapezoids."""
    neg, regs, every = _flatten(labels, scores, regions)
    points = []
    for t in [-np.inf, *sorted(set(every.tolist()))]:
        fpr = float(np.mean(neg > t))
        pro = float(np.mean([np.mean(r > t) for r in regs]))
        points.append((fpr, pro))
    points.sort()  # FPR and PRO both grow as t falls, so this is threshold order
    return _clipped_area(points, max_fpr)


def brute_official(labels, scores, regions, max_fpr=0.3, num_thresholds=100):
    """Transliteration of the MVTec 3D-AD au_pro_util.py loops (compute_pro + trapezoid)."""
    neg, regs, _ = _flatten(labels, scores, regions)
    neg = sorted(neg.tolist())
    positions = np.linspace(0, len(neg) - 1, num=num_thresholds, dtype=int)
    fprs, pros = [1.0], [1.0]
    for pos in positions:
        t = neg[pos]
        fprs.append(1.0 - (pos + 1) / len(neg))
        pros.append(sum(1.0 - sum(1 for v in r if v <= t) / len(r) for r in regs) / len(regs))
    x, y = fprs[::-1], pros[::-1]
    correction = 0.0
    if max_fpr not in x:
        i = bisect(x, max_fpr)
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (max_fpr - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_at + y[i - 1]) * (max_fpr - x[i - 1])
    keep = [k for k, v in enumerate(x) if v <= max_fpr]
    area = sum(0.5 * (y[b] + y[a]) * (x[b] - x[a]) for a, b in zip(keep, keep[1:]))
    return (area + correction) / max_fpr


# ------------------------------------------------------------------------- hand-made cases


def _two_image_case(*, tie: bool = False):
    """Two 6x8 maps. Image 0: region A = {(0,0), (1,1)}, touching only diagonally, scores 1.0
    and 0.7. Image 1: region B = 2x2 block, scores 0.95, 0.6 and two at 0.2 (0.5 with ``tie``).
    The 90 normal cells: 9 at 0.9, 18 at 0.5, 63 at 0.0 (FPR steps 0.1 and 0.3)."""
    labels = [np.zeros((H, W), bool), np.zeros((H, W), bool)]
    scores = [np.zeros((H, W)), np.zeros((H, W))]
    labels[0][0, 0] = labels[0][1, 1] = True
    scores[0][0, 0], scores[0][1, 1] = 1.0, 0.7
    labels[1][2:4, 3:5] = True
    scores[1][2, 3], scores[1][2, 4] = 0.95, 0.6
    scores[1][3, 3] = scores[1][3, 4] = 0.5 if tie else 0.2
    neg_values = np.array([0.9] * 9 + [0.5] * 18 + [0.0] * 63)
    flat = np.concatenate([s.ravel() for s in scores])
    flat[~np.concatenate([y.ravel() for y in labels])] = neg_values
    return labels, [flat[: H * W].reshape(H, W), flat[H * W :].reshape(H, W)]


def test_aupro_exact_hand_value_with_diagonal_region():
    labels, scores = _two_image_case()
    # 8-connected: A (size 2, weight 1/4 each), B (size 4, weight 1/8 each).
    # FPR 0 -> 0.1 at PRO 1/4 + 1/8 = 3/8; FPR 0.1 -> 0.3 at PRO 1/2 + 1/4 = 3/4.
    # (0.1 * 3/8 + 0.2 * 3/4) / 0.3 = 0.1875 / 0.3 = 5/8.
    assert aupro(labels, scores) == pytest.approx(5 / 8, abs=1e-12)
    # 4-connected: three regions, A's cells 1/3 each, B's 1/12: (0.1*5/12 + 0.2*10/12)/0.3 = 25/36.
    four = [ndimage.label(y)[0] for y in labels]
    assert aupro(labels, scores, four) == pytest.approx(25 / 36, abs=1e-12)
    assert brute_exact(labels, scores, [grid_regions(y) for y in labels]) == pytest.approx(5 / 8)


def test_aupro_official_hand_value_with_diagonal_region():
    labels, scores = _two_image_case()
    # 90 negatives <= 100 thresholds: every rank p is visited, FPR = 1 - (p+1)/90.
    # PRO = 3/8 for FPR 0..8/90, 3/4 for 9/90..26/90, 1 from 27/90 (= 0.3) on; trapezoids join
    # the steps diagonally: (8*3/8 + (3/8+3/4)/2 + 17*3/4 + (3/4+1)/2) / 90 / 0.3 = 17.1875 / 27.
    assert aupro(labels, scores, method="official") == pytest.approx(17.1875 / 27, abs=1e-12)


def test_aupro_exact_interpolates_at_max_fpr_inside_a_segment():
    labels, scores = _two_image_case(tie=True)
    # B's two 0.5 cells tie with the 18 normal 0.5 cells: one straight segment from (0.1, 3/4)
    # to (0.3, 1). At max_fpr 0.2 the PRO is 7/8: (0.1*3/8 + 0.1*(3/4+7/8)/2) / 0.2 = 19/32.
    assert aupro(labels, scores, max_fpr=0.2) == pytest.approx(19 / 32, abs=1e-12)
    assert aupro(labels, scores) == pytest.approx((0.0375 + 0.2 * 1.75 / 2) / 0.3, abs=1e-12)


def test_aupro_official_interpolates_between_its_thresholds():
    # Point vectors: 10 normal points scored 0.0..0.9, one region of two points (0.85, 0.35).
    scores = [np.r_[np.arange(10) / 10, 0.85, 0.35]]
    labels = [np.r_[np.zeros(10, bool), True, True]]
    regions = [np.r_[np.zeros(10, int), 1, 1]]
    # 4 thresholds at ranks 0, 3, 6, 9 -> (FPR, PRO) = (0.9, 1), (0.6, 1), (0.3, 0.5), (0, 0).
    # To 0.45: 0.3*0.5/2 + 0.15*(0.5+0.75)/2 = 0.16875 -> /0.45 = 0.375.
    official = aupro(labels, scores, regions, method="official", num_thresholds=4, max_fpr=0.45)
    assert official == pytest.approx(0.375, abs=1e-12)
    assert aupro(labels, scores, regions, method="official", num_thresholds=4) == pytest.approx(
        0.25, abs=1e-12
    )
    # Exact staircase: PRO 0 until FPR 0.1, then 0.5 -> (0.2 * 0.5) / 0.3 = 1/3.
    assert aupro(labels, scores, regions) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_official_equals_exact_when_regions_tie_with_negatives():
    # Distinct negatives, N_neg <= 100 (every rank visited), every region score equal to some
    # negative score: the exact curve has points only at negative scores, the same as official.
    rng = np.random.default_rng(3)
    neg = rng.permutation(np.linspace(0.0, 1.0, 60))
    labels, scores, regions = [], [], []
    for sample in range(3):
        y = np.r_[np.zeros(20, bool), np.ones(7, bool)]
        r = np.r_[np.zeros(20, int), [1, 1, 1, 4, 4, 2, 2]]
        s = np.r_[neg[sample * 20 : (sample + 1) * 20], rng.choice(neg, 7)]
        labels.append(y), scores.append(s), regions.append(r)
    exact = aupro(labels, scores, regions)
    assert aupro(labels, scores, regions, method="official") == pytest.approx(exact, abs=1e-12)
    assert exact == pytest.approx(brute_exact(labels, scores, regions), abs=1e-12)
    assert 0.05 < exact < 0.95  # a non-trivial curve


# ---------------------------------------------------------------------------- chance values


def _random_case(rng, shape=(40, 50), samples=3):
    labels, regions = [], []
    for _ in range(samples):
        y = np.zeros(shape, bool)
        y[5:25, 5:20] = True
        y[30:38, 30:48] = True
        labels.append(y)
        regions.append(grid_regions(y))
    return labels, regions


def test_aupro_perfect_scores_give_one():
    labels, regions = _random_case(np.random.default_rng(0))
    scores = [y.astype(float) for y in labels]
    assert aupro(labels, scores, regions) == pytest.approx(1.0, abs=1e-12)
    assert aupro(labels, scores, regions, method="official") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("max_fpr", [0.3, 0.5, 1.0])
def test_aupro_constant_scores_exact_is_half_max_fpr_official_is_zero(max_fpr):
    # Exact: one distinct score -> curve (0,0)-(1,1), PRO = FPR, area max_fpr^2/2, / max_fpr.
    # Official: no score is strictly above the threshold -> PRO 0 below FPR 1 - 1/N_neg.
    labels, regions = _random_case(np.random.default_rng(0))
    scores = [np.full(y.shape, 0.25) for y in labels]
    assert aupro(labels, scores, regions, max_fpr=max_fpr) == pytest.approx(max_fpr / 2, abs=1e-12)
    if max_fpr < 1:
        assert aupro(labels, scores, regions, max_fpr=max_fpr, method="official") == 0.0


def test_aupro_uniform_random_scores_near_half_max_fpr():
    # Scores iid uniform: each region's fraction above the negative (1-f)-quantile is ~f, so
    # PRO(f) ~ f and AUPRO ~ (max_fpr^2 / 2) / max_fpr = 0.15 for max_fpr = 0.3.
    rng = np.random.default_rng(1)
    labels, regions = _random_case(rng, shape=(60, 80), samples=4)
    scores = [rng.random(y.shape) for y in labels]
    for method in ("exact", "official"):
        assert aupro(labels, scores, regions, method=method) == pytest.approx(0.15, abs=0.015)


# --------------------------------------------------------------- agreement with brute force


def _random_tied_case(seed):
    """Grids and point vectors mixed, few distinct scores (many ties), ids not consecutive,
    some anomalous elements outside every region (ignored), several regions per sample."""
    rng = np.random.default_rng(seed)
    labels, scores, regions = [], [], []
    for shape in [(5, 7), (4, 6), (23,), (6, 3)]:
        y = rng.random(shape) < 0.35
        r = np.where(y, rng.choice([0, 1, 3, 7], size=shape, p=[0.1, 0.3, 0.3, 0.3]), 0)
        labels.append(y)
        regions.append(r)
        scores.append(rng.integers(0, 9, size=shape) / 8 + 0.3 * y * rng.random(shape).round(1))
    return labels, scores, regions


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 0.37, 1.0])
def test_aupro_exact_matches_brute_force(seed, max_fpr):
    labels, scores, regions = _random_tied_case(seed)
    expected = brute_exact(labels, scores, regions, max_fpr)
    assert aupro(labels, scores, regions, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_fpr", "num_thresholds"), [(0.3, 100), (0.3, 7), (0.21, 13)])
def test_aupro_official_matches_brute_force(seed, max_fpr, num_thresholds):
    labels, scores, regions = _random_tied_case(seed)
    expected = brute_official(labels, scores, regions, max_fpr, num_thresholds)
    got = aupro(
        labels, scores, regions, max_fpr=max_fpr, method="official", num_thresholds=num_thresholds
    )
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method", ["exact", "official"])
def test_aupro_invariant_to_increasing_transform_and_sample_order(method):
    labels, scores, regions = _random_tied_case(11)
    base = aupro(labels, scores, regions, method=method)
    warped = [np.exp(3 * s) - 2 for s in scores]
    assert aupro(labels, warped, regions, method=method) == pytest.approx(base, abs=1e-12)
    order = [2, 0, 3, 1]
    relabelled = [np.where(regions[i] > 0, regions[i] * 5 + 2, 0) for i in order]
    permuted = aupro(
        [labels[i] for i in order], [scores[i] for i in order], relabelled, method=method
    )
    assert permuted == pytest.approx(base, abs=1e-12)


def test_aupro_regions_are_per_sample_not_merged_across_samples():
    # The same id 1 in two samples is two regions: one fully detected, one missed -> PRO 1/2.
    labels = [np.array([True, True, False, False]), np.array([True, False, False, False])]
    scores = [np.array([0.9, 0.9, 0.1, 0.2]), np.array([0.0, 0.3, 0.4, 0.5])]
    regions = [np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])]
    assert aupro(labels, scores, regions) == pytest.approx(
        brute_exact(labels, scores, regions), abs=1e-12
    )
    merged = aupro([np.concatenate(labels)], [np.concatenate(scores)], [np.concatenate(regions)])
    assert merged != pytest.approx(aupro(labels, scores, regions))


# -------------------------------------------------------------------------- input handling


def test_aupro_regions_none_uses_8_connected_grid_regions():
    labels, scores = _two_image_case()
    assert aupro(labels, scores) == aupro(labels, scores, [grid_regions(y) for y in labels])


def test_aupro_accepts_stack_and_torch_tensors():
    labels, scores = _two_image_case()
    stacked = aupro(np.stack(labels), np.stack(scores))
    tensors = aupro([torch.from_numpy(y) for y in labels], [torch.from_numpy(s) for s in scores])
    assert stacked == tensors == aupro(labels, scores)


def test_pro_curve_is_monotone_from_origin_to_one():
    labels, scores, regions = _random_tied_case(4)
    for method in ("exact", "official"):
        curve = pro_curve(labels, scores, regions, method=method)
        assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.pro) >= -1e-12)
        assert curve.fpr[0] == 0.0 and curve.fpr[-1] == 1.0 and curve.pro[-1] == pytest.approx(1)


def test_aupro_without_regions_warns_and_returns_nan():
    labels = [np.zeros((H, W), bool)]
    with pytest.warns(UndefinedMetricWarning, match="no anomalous region"):
        assert np.isnan(aupro(labels, [np.random.default_rng(0).random((H, W))]))


def test_aupro_without_negatives_warns_and_returns_nan():
    with pytest.warns(UndefinedMetricWarning, match="no normal element"):
        value = aupro([np.ones(4, bool)], [np.arange(4.0)], [np.ones(4, int)])
    assert np.isnan(value)


def test_point_metrics_aupro_matches_aupro_for_both_methods():
    labels, scores, regions = _random_tied_case(5)
    for method in ("exact", "official"):
        got = point_metrics(labels, scores, regions, method=method, max_fpr=0.2)
        assert got.aupro == pytest.approx(
            aupro(labels, scores, regions, method=method, max_fpr=0.2), abs=1e-12
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_fpr": 0.0}, r"max_fpr must be .* got 0\.0"),
        ({"max_fpr": 1.5}, r"max_fpr must be .* got 1\.5"),
        ({"method": "cflow"}, r"method must be one of .* got 'cflow'"),
        ({"num_thresholds": 0}, r"num_thresholds must be a positive integer, got 0"),
    ],
)
def test_aupro_invalid_options_raise(kwargs, match):
    labels, scores = _two_image_case()
    with pytest.raises(ValueError, match=match):
        aupro(labels, scores, **kwargs)


def test_aupro_invalid_regions_raise():
    labels, scores = _two_image_case()
    good = [grid_regions(y) for y in labels]
    with pytest.raises(ValueError, match=r"regions\[1\] must have the shape of labels\[1\]"):
        aupro(labels, scores, [good[0], good[1][:, :-1]])
    with pytest.raises(ValueError, match="integer array"):
        aupro(labels, scores, [r.astype(float) for r in good])
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        aupro(labels, scores, [good[0], -good[1]])
    with pytest.raises(ValueError, match="region elements labelled normal"):
        aupro(labels, scores, [np.ones((H, W), int), good[1]])
    with pytest.raises(ValueError, match="point_regions"):
        aupro([np.array([True, False])], [np.array([0.1, 0.2])])
