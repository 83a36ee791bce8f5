"""render_report: the files the CLI's render command writes and the coverage it prints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from align3d_ad.data import PointCloudSample
from align3d_ad.viz import render_report
from align3d_ad.viz.report import COLOR_PNG, GEOMETRY_PNG, SCORES_PNG


def test_render_report_writes_grids_and_returns_coverage(tmp_path):
    u, v = np.meshgrid(np.linspace(-1, 1, 30), np.linspace(-1, 1, 30))
    xyz = np.stack([u, v, 1.0 - 0.2 * np.exp(-(u**2 + v**2))], -1).astype(np.float32)
    mask = (u > 0.5) & (v > 0.5)
    sample = PointCloudSample.from_grid(
        xyz, colors=np.ones_like(xyz) * 0.3, mask=mask, sample_id="t"
    )
    cov = render_report(
        sample, tmp_path / "out", preset="mvtec3d", image_size=32, scores=np.ones(900)
    )
    for name in (GEOMETRY_PNG, COLOR_PNG, SCORES_PNG):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size[0] == 3 * 32 + 2 * 2
    # A single-sided height field seen from the sensor side: every point visible in every view.
    assert cov.num_points == 900 and cov.num_views == 9
    assert cov.visible_fraction == 1.0
    assert cov.mean_views_per_point == pytest.approx(9.0)


def test_render_report_coverage_of_a_sphere_counts_hidden_points(tmp_path):
    gen = np.random.default_rng(0)
    p = gen.normal(size=(2000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    cov = render_report(PointCloudSample(p), tmp_path, preset="mvtec3d", image_size=48)
    # Views turn at most 45 degrees: the back cap (angle > 45 + 90 from the camera axis) is unseen.
    assert 0.6 < cov.visible_fraction < 0.97
    assert 3.0 < cov.mean_views_per_point < 6.0
    assert not (tmp_path / COLOR_PNG).exists()
