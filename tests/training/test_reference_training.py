"""Training in reference style renders the points the test scores (REFERENCE.md §1)."""

from __future__ import annotations

import numpy as np
import pytest

from align3d_ad.data import PointCloudSample
from align3d_ad.data.prepare import PreparedSample
from align3d_ad.data.reference import reference_resample
from align3d_ad.training import train_model
from align3d_ad.training import trainer as trainer_module
from align3d_ad.training.reference import reference_training_samples
from pipeline_helpers import demo_config


class _Stop(Exception):
    pass


def _prepared(sample: PointCloudSample) -> PreparedSample:
    rows = np.arange(sample.num_points)
    return PreparedSample(sample=sample, original=sample, foreground=rows, rendered=rows)


def test_training_with_reference_postprocess_renders_the_resampled_points(
    tmp_path, synth_mvtec, feature_cache, monkeypatch
):
    seen = {}

    def capture(samples, encoder, **kwargs):
        seen["samples"], seen["settings"] = [p.sample for p in samples], encoder.settings
        raise _Stop

    monkeypatch.setattr(trainer_module, "build_train_items", capture)
    native = trainer_module.load_training_samples(demo_config(synth_mvtec, feature_cache))
    for style in ("reference", "native"):
        config = demo_config(synth_mvtec, feature_cache, f"method.postprocess={style}",
                             "eval.grid_size=48", "render.style=reference")  # fmt: skip
        with pytest.raises(_Stop):
            train_model(config, tmp_path / style)
        got = seen["samples"]
        assert len(got) == len(native) and type(seen["settings"]).__name__ == "ReferenceRenderSettings"
        for p, s in zip(native, got):
            if style == "native":  # the test scores the native points: so does training
                np.testing.assert_array_equal(s.points, p.sample.points)
                continue
            expected, _ = reference_resample(p.sample, 48, seed=config.seed)
            assert s.grid_shape == (48, 48) and s.num_points < p.sample.num_points
            np.testing.assert_array_equal(s.points, expected.points)
            np.testing.assert_array_equal(s.point_labels, expected.point_labels)


def test_unorganised_training_clouds_become_exactly_size_squared_points(synth_mvtec, feature_cache):
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(500, 3)).astype(np.float32)
    sample = PointCloudSample(pts, point_labels=pts[:, 0] > 1.0, label=1, category="duck")
    config = demo_config(synth_mvtec, feature_cache, "method.postprocess=reference", "eval.grid_size=30")
    (out,) = reference_training_samples([_prepared(sample)], config)
    assert out.sample.num_points == 900 and out.original is sample
    np.testing.assert_array_equal(out.sample.points[:500], pts)  # every input point kept, in order
    np.testing.assert_array_equal(out.sample.points, reference_resample(sample, 30, seed=config.seed)[0].points)


def test_eyecandies_training_samples_lose_the_reference_background_box(synth_mvtec, feature_cache):
    # a level belt (z = 0.1) along y with a 0.3-high block; 24 x 24 = the grid: anchors at flat
    # 256 = (10, 16) on the far belt and 320 = (13, 8) near; the block's cells are kept
    rows, cols = np.mgrid[0:24, 0:24]
    x, y = (cols - 12) / 10.0, (23 - rows) / 7.0  # the far face (y - y[13, 8] > 1.8): rows < 1
    block = (np.abs(x) < 0.3) & (rows < 12)
    xyz = np.stack([x, y + 0.1, np.where(block, 0.4, 0.1)], axis=-1).astype(np.float32)
    sample = PointCloudSample.from_grid(xyz, label=0, category="Bagel",
                                        meta={"dataset": "eyecandies"})  # fmt: skip
    keep = (block & (y - y[13, 8] <= 1.8)).reshape(-1)
    assert 0 < keep.sum() < block.sum()
    config = demo_config(synth_mvtec, feature_cache, "method.postprocess=reference", "eval.grid_size=24")
    (out,) = reference_training_samples([_prepared(sample)], config)
    np.testing.assert_array_equal(out.sample.grid_index, np.flatnonzero(keep))
    np.testing.assert_array_equal(out.foreground, np.flatnonzero(keep))
    np.testing.assert_array_equal(out.sample.points, sample.points[keep])  # not moved
