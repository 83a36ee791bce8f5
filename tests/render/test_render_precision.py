"""Normalisation in float64: renderings and scores do not depend on where a cloud lies or its units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from align3d_ad.data import PointCloudSample, get_dataset
from align3d_ad.data.prepare import prepare_sample
from align3d_ad.errors import DatasetFormatError
from align3d_ad.render import RenderSettings, normalisation, normalise, render_batch

OFFSET = 1e4
#: Coordinates on a 2^-10 grid below 2^13: the cloud + 1e4 (< 2^14) is exact in float32 too.
STEP = 2.0**-10


def _exact_cloud(n: int = 2000, seed: int = 0) -> np.ndarray:
    """A bumpy blob of ``n`` points, radius ~40, on the 2^-10 grid (float64)."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3))
    xyz = xyz / np.linalg.norm(xyz, axis=1, keepdims=True) * (40 + 3 * np.sin(5 * xyz[:, :1]))
    xyz = np.round(xyz / STEP) * STEP
    # bounding box ends whose sum is an odd multiple of STEP: a float32 centre at +1e4 rounds
    xyz[0], xyz[1] = -44.0, 44.0 + STEP
    moved = (xyz + OFFSET).astype(np.float32)
    assert np.array_equal(moved.astype(np.float64) - OFFSET, xyz)  # no rounding at either place
    return xyz


def test_normalised_points_of_a_moved_cloud_agree_to_float32_rounding():
    xyz = _exact_cloud()
    near, far = (torch.tensor(xyz + o, dtype=torch.float32) for o in (0.0, OFFSET))
    c0, s0 = normalisation(near)
    c1, s1 = normalisation(far)
    assert c0.dtype == s0.dtype == torch.float64
    assert float(s0) == float(s1) and torch.equal(c1 - c0, torch.full((3,), OFFSET, dtype=torch.float64))
    a, b = normalise(near, c0, s0), normalise(far, c1, s1)
    assert a.dtype == torch.float32
    assert float((a - b).abs().max()) <= 1e-6
    assert float(a.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-6)


def test_rendering_of_a_moved_cloud_is_the_same():
    """In float32 the centre of the moved cloud was off by up to 5e-4 (1e-5 radii): pixels moved."""
    xyz = _exact_cloud()
    settings = RenderSettings(image_size=96)
    near, far = (render_batch([torch.tensor(xyz + o, dtype=torch.float32)], "mvtec3d", settings)
                 for o in (0.0, OFFSET))  # fmt: skip
    assert float((near.pixel_coords - far.pixel_coords).abs().max()) <= 96 * 1e-6
    assert float((near.point_depth - far.point_depth).abs().max()) <= 1e-6
    assert torch.equal(near.index_map, far.index_map) and torch.equal(near.visible, far.visible)
    assert torch.allclose(near.images, far.images, atol=1e-5)


@pytest.mark.parametrize("factor", [2.0**100, 2.0**-100])
def test_rendering_does_not_depend_on_units(factor):
    """Coordinates x 1e30 overflowed the float32 radius: every point landed on the centre."""
    xyz = _exact_cloud()
    settings = RenderSettings(image_size=64)
    base = render_batch([torch.tensor(xyz, dtype=torch.float32)], "mvtec3d", settings)
    scaled = render_batch([torch.tensor(xyz * factor, dtype=torch.float32)], "mvtec3d", settings)
    assert float((base.pixel_coords - scaled.pixel_coords).abs().max()) <= 64 * 1e-6
    assert torch.equal(base.index_map, scaled.index_map)
    assert float(scaled.splat_radius[0]) == pytest.approx(float(base.splat_radius[0]), rel=1e-6)


def test_a_batch_is_normalised_per_sample_in_float64():
    xyz = _exact_cloud(500)
    clouds = [torch.tensor(xyz, dtype=torch.float32), torch.tensor(xyz + OFFSET, dtype=torch.float32)]
    rendering = render_batch(clouds, "mvtec3d", RenderSettings(image_size=48))
    first, second = rendering.split(rendering.pixel_coords)
    assert float((first - second).abs().max()) <= 48 * 1e-6
    assert rendering.centres.dtype == torch.float64


# ---------------------------------------------------------------------------------- the detector
@pytest.fixture(scope="module")
def detector(trained_run):
    from align3d_ad.model.detector import load_detector

    return load_detector(trained_run, device="cpu", use_cache=False)


@pytest.fixture(scope="module")
def object_mm(detector, synth_mvtec) -> np.ndarray:
    """A test object of the synthetic data in mm on the 2^-10 grid (exact at +1e4 in float32)."""
    reader = get_dataset("mvtec3d", synth_mvtec)
    sample = reader.load(reader.refs("cookie", "test")[0])
    points = prepare_sample(sample, detector.config.data).sample.points.astype(np.float64)
    mm = np.round(points * 1000 / STEP) * STEP
    assert np.abs(mm).max() < 2**13
    return mm


def _scores(detector, xyz: np.ndarray):
    prediction = detector.predict(PointCloudSample.from_points(xyz.astype(np.float32)))
    return prediction.point_scores, prediction.object_score


def test_scores_of_a_moved_cloud_agree(detector, object_mm):
    """Issue 12: + 1e4 shifted the point scores by 3e-4 (float32 centring)."""
    points, obj = _scores(detector, object_mm)
    moved, moved_obj = _scores(detector, object_mm + OFFSET)
    assert float(np.abs(points - moved).max()) <= 1e-6 and abs(obj - moved_obj) <= 1e-6
    assert float(points.std()) > 1e-4  # a real score map, not a constant


def test_scores_do_not_depend_on_units(detector, object_mm):
    """Issue 12: coordinates x 1e30 gave every point the same score."""
    points, obj = _scores(detector, object_mm)
    scaled, scaled_obj = _scores(detector, object_mm * 2.0**100)
    assert float(scaled.std()) > 1e-4
    np.testing.assert_allclose(scaled, points, atol=1e-5)
    assert scaled_obj == pytest.approx(obj, abs=1e-5)


def test_the_detector_refuses_degenerate_clouds(detector, object_mm):
    with pytest.raises(DatasetFormatError, match="at least 16"):
        detector.predict(object_mm[:5])
    with pytest.raises(DatasetFormatError, match="same point"):
        detector.predict(np.repeat(object_mm[:1], 100, axis=0))
