"""Reference post-processing scores Eyecandies scans after the reference's background box."""

from __future__ import annotations

import dataclasses

import numpy as np

from align3d_ad.data import PointCloudSample
from align3d_ad.model.detector import Detector

SIZE = 48  # native 48 x 48 = the reference grid: belt anchors at flat 256 (5, 16), 2048 (42, 32)


def _belt_scan() -> tuple[PointCloudSample, np.ndarray]:
    """A level belt (z = 0.1, the grid's rows along y), a 0.3-high block on it; the cells kept."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    x, yy = (cols - 24) / 20.0, (SIZE - 1 - rows) / 19.0  # |x| up to 1.2, yy from 0 to 2.47
    block = (np.abs(x) < 0.3) & (yy > 0.5) & (yy < 2.2)  # the anchors (x = -0.4, 0.4) are belt
    xyz = np.stack([x, yy + 0.1, np.where(block, 0.4, 0.1)], axis=-1).astype(np.float32)
    sample = PointCloudSample.from_grid(xyz, label=0, category="Bagel", sample_id="test/0",
                                        meta={"dataset": "eyecandies"})  # fmt: skip
    # levelled frame from the bottom anchor (42, 32): q_y = -(z - 0.1), q_z = yy - yy[42, 32]
    keep = block & (yy - yy[42, 32] <= 1.8) & (np.abs(x) <= 1.0)
    return sample, keep.reshape(-1)


def test_reference_prediction_of_an_eyecandies_scan_keeps_the_boxed_points(trained_run):
    base = Detector.from_checkpoint(trained_run, device="cpu")
    cfg = base.config
    config = dataclasses.replace(
        cfg, method=dataclasses.replace(cfg.method, postprocess="reference"),
        eval=dataclasses.replace(cfg.eval, grid_size=SIZE),
    )  # fmt: skip
    sample, keep = _belt_scan()
    assert 0 < keep.sum() < (sample.points[:, 2] > 0.2).sum()  # the far end of the block is cut
    pred = Detector(config, base.encoder, base.head).predict(sample)
    np.testing.assert_array_equal(pred.foreground, keep)
    assert (pred.point_scores[~keep] == 0).all() and (pred.point_scores[keep] > 0).all()
    grid, _ = pred.reference
    assert grid.shape == (SIZE, SIZE) and (grid.reshape(-1)[~keep] > 0).any()  # blur covers all
