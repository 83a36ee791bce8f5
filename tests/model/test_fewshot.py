"""Few-shot reference bank and thresholds: exact values on hand-made tokens and scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from align3d_ad.errors import ConfigError
from align3d_ad.model.fewshot import ReferenceBank, kcenter_coreset
from align3d_ad.model.thresholds import f1_threshold, rate_threshold


def _tokens(v=3, layers=2, p=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, layers, 1 + p, d, generator=g)


def test_view_identical_to_a_reference_scores_zero():
    refs = [_tokens(seed=k) for k in range(3)]
    bank = ReferenceBank.from_features(refs, ["a", "b", "c"])
    test = refs[1][None]  # (1, V, L, 1+P, D): the very views of reference 1
    score = bank.score(test)
    assert score.shape == (1, 3, 4)
    assert torch.allclose(score, torch.zeros_like(score), atol=2e-3)  # fp16 bank


def test_token_orthogonal_to_the_bank_scores_one():
    ref = torch.zeros(1, 1, 1 + 2, 4)
    ref[0, 0, 1:, 0] = 1.0  # the bank holds only +e0 tokens
    bank = ReferenceBank.from_features([ref], ["a"])
    test = torch.zeros(1, 1, 1, 1 + 2, 4)
    test[..., 1:, 2] = 3.0  # e2: orthogonal to every bank token
    assert torch.allclose(bank.score(test), torch.ones(1, 1, 2))
    test[..., 1:, :] = torch.tensor([1.0, 0.0, 1.0, 0.0])  # 45 degrees: 1 - cos 45
    assert torch.allclose(bank.score(test), torch.full((1, 1, 2), 1 - math.sqrt(0.5)), atol=1e-3)


def test_leave_one_out_really_leaves_one_out():
    refs = [_tokens(seed=k) for k in range(3)]
    bank = ReferenceBank.from_features(refs, ["a", "b", "c"])
    test = refs[0][None]
    assert float(bank.score(test).max()) < 2e-3  # in the bank: 0
    loo = bank.score(test, exclude=[0])
    assert float(loo.min()) > 0.05  # random tokens of the others are far
    assert torch.allclose(loo, bank.without(0).score(test))
    assert set(bank.without(0).owner.tolist()) == {1, 2}


def test_bank_round_trip_and_cap(tmp_path):
    refs = [_tokens(seed=k, p=16) for k in range(4)]  # 4 x 3 views x 16 patches = 192 tokens
    bank = ReferenceBank.from_features(refs, list("abcd"), max_tokens=50)
    assert bank.coreset and bank.tokens.shape == (2, 50, 8) and bank.tokens.dtype == torch.float16
    back = ReferenceBank.load(bank.save(tmp_path / "refs.safetensors"))
    assert torch.equal(back.tokens, bank.tokens) and torch.equal(back.owner, bank.owner)
    assert back.hashes == list("abcd") and back.coreset
    assert b"pickle" not in (tmp_path / "refs.safetensors").read_bytes()[:200]


def test_kcenter_picks_the_far_points():
    x = torch.tensor([[0.0, 0.0], [0.01, 0.0], [10.0, 0.0], [0.0, 10.0]])
    keep = kcenter_coreset(x, 3)
    assert {2, 3} <= set(keep.tolist()) and len(keep) == 3


def test_rate_threshold_equals_the_hand_computed_quantile():
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    # rate 0.2 of 10 normals: at most 2 flagged -> the 8th smallest, 0.8 (0.9 and 1.0 above it)
    t = rate_threshold(scores, 0.2)
    assert (t.value, t.how, t.count) == (0.8, "quantile", 10)
    assert (scores > t.value).sum() == 2
    assert rate_threshold(scores, 0.1).value == 0.9  # exactly 1 of 10
    assert rate_threshold(scores, 0.15).value == 0.9  # floor(1.5) = 1


def test_rate_below_one_over_n_uses_the_margin_rule():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    t = rate_threshold(scores, 0.01)  # 1 % of 4 normals cannot be measured
    z = 2.3263478740408408  # standard normal quantile at 0.99
    assert t.how == "margin"
    assert t.value == pytest.approx(2.5 + z * np.std(scores, ddof=1))
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        rate_threshold(scores, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        rate_threshold([np.nan], 0.5)


def test_f1_threshold_separates_separable_scores():
    t = f1_threshold([0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 0, 1, 1])
    assert t.how == "f1" and t.value == pytest.approx(0.55)
    t = f1_threshold([0.1, 0.5, 0.4, 0.9], [0, 1, 0, 1])  # best: flag 0.9 and 0.5 -> F1 1
    assert t.value == pytest.approx(0.45)


def test_scales_survive_the_round_trip_and_leave_one_out(tmp_path):
    bank = ReferenceBank.from_features([_tokens(seed=k) for k in range(2)], ["a", "b"])
    bank.scales = (0.02, 0.5)
    assert bank.without(0).scales == (0.02, 0.5)
    assert ReferenceBank.load(bank.save(tmp_path / "b.safetensors")).scales == (0.02, 0.5)


def test_fusion_puts_both_maps_on_one_scale():
    from align3d_ad.model.fewshot import fuse_fewshot

    zero, few = torch.tensor([0.2, 0.4]), torch.tensor([0.01, 0.03])
    point, obj = fuse_fewshot(zero, torch.tensor(1.0), few, weight=0.25, scales=(0.1, 0.01))
    assert torch.allclose(point, 0.75 * zero / 0.1 + 0.25 * few / 0.01)
    assert float(obj) == pytest.approx(0.75 * 1.0 / 0.1 + 0.25 * 0.03 / 0.01)


def test_a_reference_of_another_part_is_named():
    from align3d_ad.model.calibration import _outliers

    assert _outliers([1.0, 1.1, 0.9, 1.05], list("abcd")) == []
    (line,) = _outliers([1.0, 1.1, 0.9, 3.0], ["a", "b", "c", "other.tiff"])
    assert "other.tiff" in line and "same part" in line


def test_spread_warning_compares_references_with_the_scans_scored():
    from align3d_ad.model.calibration import Calibration
    from align3d_ad.model.thresholds import Threshold

    cal = Calibration(Threshold(1.0, "quantile", 4), Threshold(1.0, "quantile", 9), 0.25, 0.5,
                      {}, {}, {}, [{}] * 4, [0.0, 1.0, 2.0, 3.0])  # fmt: skip
    assert cal.spread_warning([0.0, 2.0, 4.0]) is None  # the scans spread more
    assert "references" in cal.spread_warning([1.0, 1.1, 1.2])
    assert cal.spread_warning([1.0, 1.1]) is None  # too few to tell
    assert cal.verdict(1.0) == "ok" and cal.verdict(1.0001) == "anomalous"
