"""Reference-style point metrics: PointAD's cflow AUPRO and the bilinear > 0.5 GT (REFERENCE.md §4)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score

from align3d_ad.evaluate.reference import cflow_aupro, reference_gt, reference_point_metrics


def _loop_cal_pro_score(masks: np.ndarray, amaps: np.ndarray, max_step=200, expect_fpr=0.3):
    """The reference procedure written out literally: one pass over the maps per threshold."""
    binary = np.zeros_like(amaps, dtype=bool)
    lo, hi = amaps.min(), amaps.max()
    delta = (hi - lo) / max_step
    pros, fprs = [], []
    for th in np.arange(lo, hi, delta):
        binary[amaps <= th], binary[amaps > th] = 0, 1
        pro = []
        for b, m in zip(binary, masks):
            lab, n = ndimage.label(m, structure=np.ones((3, 3)))  # skimage label, 8-connected
            for k in range(1, n + 1):
                region = lab == k
                pro.append(b[region].sum() / region.sum())
        inverse = 1 - masks
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.array(pro).mean())
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    fprs = fprs[keep]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return auc(fprs, pros[keep])


def test_cflow_aupro_hand_computed_with_ties():
    # 4 x 5 grid: region A = (0,0),(0,1) scoring 2 and 4, region B = (3,4) scoring 3 (not
    # 8-adjacent to A); 17 normal cells: nine 0, three 1, two 2, one each of 3, 4, 5 (ties with
    # A and B). max_step 5 -> thresholds 0..4; a cell counts when its score is strictly above.
    # FPR = [8, 5, 3, 2, 1] / 17, kept (< 0.3: 5/17 = 0.294 is) from t = 1, min-max rescaled:
    # [5, 3, 2, 1] / 17 -> [1, .5, .25, 0]
    # PRO (mean of A's and B's fractions) = [1, .75, .25, 0]
    # area = .5 * 1.75 / 2 + .25 * 1 / 2 + .25 * .25 / 2 = 0.59375
    scores = np.zeros((4, 5))
    mask = np.zeros((4, 5), dtype=bool)
    mask[0, 0:2] = mask[3, 4] = True
    scores[0, 0], scores[0, 1], scores[3, 4] = 2, 4, 3
    normal = np.array([0] * 9 + [1] * 3 + [2] * 2 + [3, 4, 5], dtype=float)
    scores[~mask] = normal
    assert cflow_aupro([mask], [scores], max_step=5) == pytest.approx(0.59375, abs=1e-9)
    assert _loop_cal_pro_score(mask[None], scores[None], 5) == pytest.approx(0.59375, abs=1e-9)


def test_cflow_aupro_object_under_30_percent_of_normal_cells_is_rescaled():
    # 10 x 10 grid, 80 background cells scored 0, object of 20 cells: a 2-cell region scoring
    # 4 and 2, 18 normal object cells (six each of 1, 2, 3) = 18/98 < 0.3 of the normal cells.
    # thresholds (max_step 4) 0..3 are all kept: FPR = [18, 12, 6, 0]/98 -> [1, 2/3, 1/3, 0];
    # PRO = [1, 1, .5, .5]; area = 1/3 + 1/4 + 1/6 = 0.75
    scores = np.zeros((10, 10))
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0] = mask[0, 1] = True
    scores[0, 0], scores[0, 1] = 4, 2
    scores[5:7, 1:10] = np.array([1] * 6 + [2] * 6 + [3] * 6, dtype=float).reshape(2, 9)
    assert cflow_aupro([mask], [scores], max_step=4) == pytest.approx(0.75, abs=1e-9)
    assert _loop_cal_pro_score(mask[None], scores[None], 4) == pytest.approx(0.75, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cflow_aupro_equals_the_reference_procedure_on_float32_maps(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 24, 24), dtype=np.float32)
    masks[0, 3:9, 4:10] = 1
    masks[0, 15:18, 15:22] = 1
    masks[2, 10:20, 2:5] = 1
    amaps = rng.random((3, 24, 24)).astype(np.float32) * 0.4 + masks * 0.3
    amaps = np.round(amaps * 50) / np.float32(50)  # ties
    amaps[1, :8] = 0.0  # a zero background band
    ref = _loop_cal_pro_score(masks, amaps)
    ours = cflow_aupro(list(masks.astype(bool)), list(amaps))
    assert ours == pytest.approx(ref, abs=1e-9)
    metrics = reference_point_metrics(list(masks.astype(bool)), list(amaps))
    assert metrics.aupro == ours
    assert metrics.p_auroc == pytest.approx(roc_auc_score(masks.ravel(), amaps.ravel()), abs=1e-12)


def test_cflow_aupro_undefined_cases_are_nan_with_a_warning():
    mask = np.zeros((4, 4), dtype=bool)
    with pytest.warns(Warning, match="no anomalous region"):
        assert math.isnan(cflow_aupro([mask], [np.random.rand(4, 4)]))
    mask[0, 0] = True
    with pytest.warns(Warning, match="constant"):
        assert math.isnan(cflow_aupro([mask], [np.ones((4, 4))]))


def test_reference_point_metrics_of_point_vectors_have_no_aupro():
    labels = [np.array([0, 1, 0, 1], dtype=bool)]
    scores = [np.array([0.1, 0.9, 0.2, 0.3])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = reference_point_metrics(labels, scores)
    assert m.p_auroc == 1.0 and math.isnan(m.aupro)


def test_reference_gt_is_pil_bilinear_then_above_half():
    # 4 x 4 -> 2 x 2: PIL's bilinear (triangle filter widened by the scale 2) weighs input
    # columns 0..2 by 3/7, 3/7, 1/7 for output column 0 and 1..3 by 1/7, 3/7, 3/7 for column 1.
    # Anomalous columns 1-2: both outputs get 255 * 4/7 = 146 > 127.5; nearest would give F, T.
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, 1:3] = True
    np.testing.assert_array_equal(reference_gt(mask, 2), np.ones((2, 2), dtype=bool))
    # a single column 1: 255 * 3/7 = 109 and 255 * 1/7: both below the half
    mask[:, 2] = False
    np.testing.assert_array_equal(reference_gt(mask, 2), np.zeros((2, 2), dtype=bool))
    # columns 0-1: 255 * 6/7 (True) and 255 * 1/7 (False); 8-bit PNG input reads the same
    mask[:, 0] = True
    expected = np.array([[True, False], [True, False]])
    np.testing.assert_array_equal(reference_gt(mask, 2), expected)
    np.testing.assert_array_equal(reference_gt(mask.astype(np.uint8) * 255, 2), expected)
