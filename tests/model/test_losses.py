"""Tests of the training losses against hand computations (METHOD.md §4, §5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from align3d_ad.errors import ShapeError
from align3d_ad.model import (
    alignment_loss,
    alignment_terms,
    dice_loss,
    dpca_loss,
    focal_loss,
    object_ce,
    pixel_loss,
    point_loss,
    scr_weights,
    view_ce,
)
from align3d_ad.model.losses import DICE_SMOOTH


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_focal_loss_hand_value() -> None:
    # pixel 1: anomalous, p_a = 0.8; pixel 2: normal, p_n = 0.4
    probs = torch.tensor([[[[0.2, 0.4]], [[0.8, 0.6]]]])  # (1, 2, 1, 2)
    mask = torch.tensor([[[1.0, 0.0]]])
    want = (-(0.2**2) * math.log(0.8) - (0.6**2) * math.log(0.4)) / 2
    assert float(focal_loss(probs, mask)) == pytest.approx(want, rel=1e-6)
    assert float(focal_loss(probs, mask.bool())) == pytest.approx(want, rel=1e-6)


def test_focal_loss_gamma_zero_is_negative_log_likelihood() -> None:
    probs = torch.randn(2, 2, 3, 4).softmax(dim=1)
    mask = torch.rand(2, 3, 4) > 0.5
    nll = F.nll_loss(probs.log(), mask.long())
    torch.testing.assert_close(focal_loss(probs, mask, gamma=0.0), nll)


def test_focal_loss_rejects_mismatched_mask() -> None:
    with pytest.raises(ShapeError, match="mask"):
        focal_loss(torch.rand(1, 2, 3, 3), torch.zeros(1, 3, 4))


def test_dice_loss_hand_value_and_per_sample_mean() -> None:
    pred = torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    d1 = (2 * 1.5 + DICE_SMOOTH) / (1.5 + 2 + DICE_SMOOTH)
    d2 = (0 + DICE_SMOOTH) / (0 + 1 + DICE_SMOOTH)
    assert float(dice_loss(pred, target)) == pytest.approx(1 - (d1 + d2) / 2, rel=1e-6)
    assert float(dice_loss(pred[:1], target[:1])) == pytest.approx(1 - d1, rel=1e-6)
    assert float(dice_loss(target, target)) == pytest.approx(0.0, abs=1e-7)


def test_pixel_loss_hand_value() -> None:
    probs = torch.tensor([[[[0.2, 0.6]], [[0.8, 0.4]]]])  # p_a = [0.8, 0.4]
    mask = torch.tensor([[[1.0, 0.0]]])
    focal = (-(0.2**2) * math.log(0.8) - (0.4**2) * math.log(0.6)) / 2
    dice_anom = 1 - (2 * 0.8 + 1) / (1.2 + 1 + 1)
    dice_norm = 1 - (2 * 0.6 + 1) / (0.8 + 1 + 1)
    want = focal + dice_anom + dice_norm
    assert float(pixel_loss(probs, mask)) == pytest.approx(want, rel=1e-6)


def test_point_loss_hand_value_and_valid_mask() -> None:
    p_a = torch.tensor([0.9, 0.2, 0.5])
    probs = torch.stack([1 - p_a, p_a], dim=1)
    labels = torch.tensor([True, False, False])
    dice_anom = 1 - (2 * 0.9 + 1) / (1.6 + 1 + 1)
    dice_norm = 1 - (2 * (0.8 + 0.5) + 1) / (1.4 + 2 + 1)
    assert float(point_loss(probs, labels)) == pytest.approx(dice_anom + dice_norm, rel=1e-6)
    # background rows excluded by `valid` do not change the loss
    bg = torch.tensor([[0.1, 0.9], [0.3, 0.7]])
    padded = torch.cat([probs, bg])
    padded_labels = torch.cat([labels, torch.tensor([False, False])])
    valid = torch.tensor([True, True, True, False, False])
    torch.testing.assert_close(
        point_loss(padded, padded_labels, valid=valid), point_loss(probs, labels)
    )
    assert float(point_loss(padded, padded_labels)) != pytest.approx(dice_anom + dice_norm)


def test_alignment_loss_hand_value_without_weights() -> None:
    pred_g = torch.tensor([_unit(0), _unit(0)])
    tgt_g = torch.tensor([_unit(90), _unit(0)])  # 1 - cos: 1 and 0
    pred_t = torch.tensor([[_unit(0), _unit(0)], [_unit(0), _unit(10)]])
    tgt_t = torch.tensor([[_unit(60), _unit(0)], [_unit(180), _unit(10)]])  # 0.5, 0, 2, 0
    terms = alignment_terms(pred_g, tgt_g, pred_t, tgt_t)
    assert float(terms.global_term) == pytest.approx(0.5, abs=1e-6)
    assert float(terms.local_term) == pytest.approx((0.5 + 2.0) / 4, abs=1e-6)
    assert float(alignment_loss(pred_g, tgt_g, pred_t, tgt_t)) == pytest.approx(
        0.5 + 0.625, abs=1e-6
    )


def test_alignment_loss_hand_value_with_weights() -> None:
    pred_g = torch.tensor([_unit(0), _unit(0)])
    pred_t = torch.tensor([[_unit(0), _unit(0)], [_unit(0), _unit(10)]])
    tgt_t = torch.tensor([[_unit(60), _unit(0)], [_unit(180), _unit(10)]])
    w = torch.tensor([[1.5, 2.0], [1.25, 1.0]])
    loss = alignment_loss(pred_g, pred_g, pred_t, tgt_t, weights=w)
    assert float(loss) == pytest.approx((1.5 * 0.5 + 1.25 * 2.0) / 4, abs=1e-6)


def test_alignment_loss_token_i_matches_token_i() -> None:
    t = F.normalize(torch.randn(2, 5, 3), dim=-1)
    g = F.normalize(torch.randn(2, 3), dim=-1)
    assert float(alignment_loss(g, g, t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(alignment_loss(g, g, t, t.flip(1))) > 0.1  # permuted tokens are penalised


def test_alignment_loss_rejects_bad_weights() -> None:
    t = torch.randn(2, 5, 3)
    with pytest.raises(ShapeError, match="weights"):
        alignment_loss(t[:, 0], t[:, 0], t, t, weights=torch.ones(2, 4))


def test_scr_weights_match_explicit_pairwise_definition() -> None:
    render = torch.randn(3, 6, 4) * 2.0
    colour = torch.randn(3, 6, 4) * 3.0
    cos = F.cosine_similarity(render[:, :, None], colour[:, None, :], dim=-1)  # (M, P, P)
    want = 1 + 0.7 * torch.sigmoid(cos.mean(dim=-1))
    got = scr_weights(render.requires_grad_(), colour, lam=0.7)
    torch.testing.assert_close(got, want.detach())
    assert not got.requires_grad


def test_scr_weights_range_and_lambda_zero() -> None:
    render, colour = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    w = scr_weights(render, colour, lam=2.0)
    assert bool(((w >= 1) & (w <= 3)).all())
    torch.testing.assert_close(scr_weights(render, colour, lam=0.0), torch.ones(2, 5))


def test_view_ce_hand_value() -> None:
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    labels = torch.tensor([[1, 1]])
    want = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2
    assert float(view_ce(logits, labels)) == pytest.approx(want, rel=1e-6)


def test_object_ce_averages_each_samples_own_views() -> None:
    logits = torch.tensor(
        [
            [[2.0, 0.0], [0.0, 0.0], [1.0, 0.0]],  # sample 0, mean [1, 0]
            [[0.0, 3.0], [0.0, 1.0], [0.0, 2.0]],  # sample 1, mean [0, 2]
        ]
    )
    labels = torch.tensor([0, 1])
    want = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    got = object_ce(logits, labels)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # the reference's mix-up: flat views regrouped as (V, B) before averaging
    mixed = F.cross_entropy(logits.reshape(3, 2, 2).mean(dim=0), labels)
    assert abs(float(got) - float(mixed)) > 0.05


def test_object_ce_rejects_wrong_label_count() -> None:
    with pytest.raises(ShapeError, match="labels"):
        object_ce(torch.zeros(2, 3, 2), torch.zeros(3, dtype=torch.long))


def test_dpca_loss_hand_value() -> None:
    own = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    other = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    # l(t_n, o_n, t_a): cos_ap = 0.6, cos_an = 0; l(t_a, o_a, t_n): cos_ap = 1, cos_an = 0
    l_n = -math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.0)))
    l_a = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.0)))
    assert float(dpca_loss(own, other)) == pytest.approx(0.5 * (l_n + l_a), rel=1e-6)


def test_dpca_loss_gradient_reaches_only_own_branch() -> None:
    own_param = torch.nn.Parameter(torch.randn(2, 5))
    other_param = torch.nn.Parameter(torch.randn(2, 5))
    own = F.normalize(own_param, dim=-1)
    other = F.normalize(other_param, dim=-1)
    dpca_loss(own, other).backward()
    assert other_param.grad is None
    assert own_param.grad is not None and float(own_param.grad.abs().sum()) > 0
