"""Tests of probabilities, patch maps and branch fusion (METHOD.md §5, §6)."""

from __future__ import annotations

import math

import pytest
import torch

from align3d_ad.errors import ShapeError
from align3d_ad.model import (
    TEMPERATURE,
    class_probs,
    fuse_scores,
    global_probs,
    patch_grid,
    patch_maps,
)

TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # t_n along x, t_a along y


def test_class_probs_hand_value() -> None:
    feat = torch.tensor([3.0, 0.0])  # unnormalised: cos = [1, 0]
    want_a = 1.0 / (1.0 + math.exp(1.0 / TEMPERATURE))
    got = class_probs(feat, TEXT)
    assert float(got[1]) == pytest.approx(want_a, rel=1e-4)
    assert float(got.sum()) == pytest.approx(1.0)
    # 45 degrees: both cosines equal
    assert class_probs(torch.tensor([1.0, 1.0]), TEXT, tau=0.5).tolist() == pytest.approx(
        [0.5, 0.5]
    )


def test_global_probs_shape_and_values() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    got = global_probs(feats, TEXT, tau=1.0)
    want_last = math.exp(0.8) / (math.exp(0.6) + math.exp(0.8))
    assert got.shape == (3, 2)
    assert float(got[2, 1]) == pytest.approx(want_last, rel=1e-6)
    with pytest.raises(ShapeError, match="global_"):
        global_probs(torch.zeros(2, 3, 2), TEXT)


def _tokens(grid: int, anomalous: list[int], *, cls_anomalous: bool = False) -> torch.Tensor:
    """(1, 1 + grid², 2) tokens along t_n except patch indices ``anomalous`` along t_a."""
    tok = TEXT[0].repeat(1 + grid * grid, 1)
    for k in anomalous:
        tok[1 + k] = TEXT[1]
    if cls_anomalous:
        tok[0] = TEXT[1]
    return tok[None]


def test_patch_maps_patch_k_lands_at_row_k_div_grid_col_k_mod_grid() -> None:
    grid, k = 3, 5
    maps = patch_maps(_tokens(grid, [k]), TEXT, grid=grid, out_size=grid)
    assert maps.shape == (1, 2, 3, 3)
    hot = (maps[0, 1] > 0.5).nonzero().tolist()
    assert hot == [[k // grid, k % grid]]
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(1, 3, 3))


def test_patch_maps_upsamples_bilinearly_with_peak_in_the_patch_cell() -> None:
    grid, k, size = 4, 6, 8  # patch 6 -> row 1, col 2 -> pixels rows 2..3, cols 4..5
    maps = patch_maps(_tokens(grid, [k]), TEXT, grid=grid, out_size=size)
    anom = maps[0, 1]
    peak = torch.nonzero(anom == anom.max()).tolist()
    assert all(2 <= r <= 3 and 4 <= c <= 5 for r, c in peak)
    # align_corners=False: pixel (2, 4) samples source (0.75, 1.75): weights 0.75 * 0.75 on the patch
    p_hot = float(class_probs(TEXT[1], TEXT)[1])
    p_cold = float(class_probs(TEXT[0], TEXT)[1])
    want = 0.5625 * p_hot + (1 - 0.5625) * p_cold
    assert float(anom[2, 4]) == pytest.approx(want, rel=1e-5)


def test_patch_maps_ignores_cls_token() -> None:
    a = patch_maps(_tokens(2, [1]), TEXT, grid=2, out_size=4)
    b = patch_maps(_tokens(2, [1], cls_anomalous=True), TEXT, grid=2, out_size=4)
    torch.testing.assert_close(a, b)


def test_patch_maps_averages_layers() -> None:
    t1, t2 = _tokens(2, [0]), _tokens(2, [3])
    both = torch.stack([t1, t2], dim=1)  # (1, L=2, 5, 2)
    got = patch_maps(both, TEXT, grid=2, out_size=6)
    want = (patch_maps(t1, TEXT, grid=2, out_size=6) + patch_maps(t2, TEXT, grid=2, out_size=6)) / 2
    torch.testing.assert_close(got, want)


def test_patch_maps_rejects_grid_mismatch() -> None:
    with pytest.raises(ShapeError, match="grid=3"):
        patch_maps(_tokens(2, []), TEXT, grid=3, out_size=6)


def test_patch_grid_reads_square_grids() -> None:
    assert patch_grid(1 + 24 * 24) == 24
    with pytest.raises(ShapeError, match="1 \\+ grid"):
        patch_grid(11)


def test_fuse_scores_hand_values() -> None:
    a_c = torch.tensor([0.2, 0.9, 0.4])
    a_r = torch.tensor([0.6, 0.1, 0.8])
    got = fuse_scores(a_c, a_r, 0.7, 0.3, alpha=0.25, beta=0.75)
    torch.testing.assert_close(got.point_scores, torch.tensor([0.3, 0.7, 0.5]))
    # alpha-mix per point: [0.5, 0.3, 0.7] -> max 0.7; + 0.25 * 0.7 + 0.75 * 0.3 = 0.4
    assert float(got.object_score) == pytest.approx(1.1, rel=1e-6)


def test_fuse_scores_rejects_bad_weight_and_length() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fuse_scores(torch.zeros(2), torch.zeros(2), 0.0, 0.0, alpha=1.5)
    with pytest.raises(ShapeError, match="point_r"):
        fuse_scores(torch.zeros(2), torch.zeros(3), 0.0, 0.0)


@pytest.mark.cuda
def test_scoring_and_losses_on_cuda_match_cpu() -> None:
    from align3d_ad.model import FeatureAligner, alignment_loss, pixel_loss, scr_weights

    tokens = torch.randn(3, 1 + 16, 8)
    text = torch.randn(2, 8)
    mask = torch.rand(3, 12, 12) > 0.7
    aligner = FeatureAligner(8)

    def run(device: str) -> list[torch.Tensor]:
        t, x, m = tokens.to(device), text.to(device), mask.to(device)
        maps = patch_maps(t, x, grid=4, out_size=12)
        g, f = aligner.to(device)(t[:, 0], t)
        w = scr_weights(t, f.detach())
        return [maps, pixel_loss(maps, m), alignment_loss(g, t[:, 0], f, t, weights=w)]

    for got, want in zip(run("cuda"), run("cpu")):
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
