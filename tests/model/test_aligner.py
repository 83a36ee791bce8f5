"""Tests of the stage-1 feature aligner (METHOD.md §4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align3d_ad.errors import ShapeError
from align3d_ad.model import FeatureAligner, alignment_loss


def test_feature_aligner_shapes_and_unit_norm() -> None:
    aligner = FeatureAligner(6)
    g, t = aligner(torch.randn(2, 3, 6), torch.randn(2, 3, 5, 6))
    assert g.shape == (2, 3, 6) and t.shape == (2, 3, 5, 6)
    torch.testing.assert_close(g.norm(dim=-1), torch.ones(2, 3))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2, 3, 5))


def test_feature_aligner_architecture_is_three_linear_layers_with_gelu() -> None:
    aligner = FeatureAligner(4)
    for mlp in (aligner.h_g, aligner.h_l):
        kinds = [type(m).__name__ for m in mlp]
        assert kinds == ["Linear", "GELU", "Linear", "GELU", "Linear"]
        assert all(m.weight.shape == (4, 4) for m in mlp if isinstance(m, torch.nn.Linear))
    assert sum(p.numel() for p in aligner.parameters()) == 2 * 3 * (4 * 4 + 4)


def test_feature_aligner_branches_are_independent() -> None:
    aligner = FeatureAligner(4)
    tokens = torch.randn(2, 3, 4)
    _, t1 = aligner(torch.randn(2, 4), tokens)
    _, t2 = aligner(torch.randn(2, 4), tokens)
    torch.testing.assert_close(t1, t2)  # h_l does not see the global token
    torch.testing.assert_close(aligner.align_tokens(tokens), t1)


def test_feature_aligner_casts_half_inputs_to_its_dtype() -> None:
    aligner = FeatureAligner(4)
    g, t = aligner(torch.randn(2, 4).half(), torch.randn(2, 3, 4).half())
    assert g.dtype == torch.float32 and t.dtype == torch.float32


def test_feature_aligner_rejects_wrong_width() -> None:
    with pytest.raises(ShapeError, match="D=4"):
        FeatureAligner(4)(torch.randn(2, 5), torch.randn(2, 3, 4))
    with pytest.raises(ShapeError, match="tokens"):
        FeatureAligner(4)(torch.randn(2, 4), torch.randn(4))


def test_feature_aligner_learns_a_fixed_rotation() -> None:
    """Colour features = rendering features rotated by a fixed Q: Adam drives L_align near 0."""
    dim, views, patches = 8, 8, 16
    q, _ = torch.linalg.qr(torch.randn(dim, dim))
    g_r = F.normalize(torch.randn(views, dim), dim=-1)
    f_r = F.normalize(torch.randn(views, patches, dim), dim=-1)
    g_c, f_c = g_r @ q.T, f_r @ q.T
    aligner = FeatureAligner(dim)
    opt = torch.optim.Adam(aligner.parameters(), lr=1e-2, betas=(0.5, 0.999))
    with torch.no_grad():
        g, t = aligner(g_r, f_r)
        start = float(alignment_loss(g, g_c, t, f_c))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread avoids sync overhead on a busy machine
    try:
        for _ in range(300):
            g, t = aligner(g_r, f_r)
            loss = alignment_loss(g, g_c, t, f_c)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        g, t = aligner(g_r, f_r)
        end = float(alignment_loss(g, g_c, t, f_c))
    assert start > 0.5
    assert end < 0.03
