"""Issue 12, defects 6 and 8 (data side): the rows of the source are remembered ((0, 0, 0) is a
real point of an unorganised cloud, missing only in grids) and files are probed cheaply."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile

from align3d_ad.config import DataConfig
from align3d_ad.data import (
    PointCloudSample,
    load_point_cloud,
    valid_point_mask,
    write_pcd,
    write_ply,
)
from align3d_ad.data.prepare import prepare_sample
from align3d_ad.data.probe import probe_point_cloud
from align3d_ad.errors import DatasetFormatError, ShapeError

NAN_ROW, ZERO_ROW = 123, 321


@pytest.fixture
def cloud():
    """500 rows: random points, one NaN row and one genuine (0, 0, 0) point."""
    xyz = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    xyz[NAN_ROW] = [np.nan, 1.0, 2.0]
    xyz[ZERO_ROW] = 0.0
    return xyz


def _text(xyz: np.ndarray) -> str:
    return "# x y z\n" + "\n".join(" ".join(f"{v:.9g}" for v in row) for row in xyz) + "\n"


def test_unorganised_files_keep_zero_points_and_know_their_rows(tmp_path, cloud):
    (tmp_path / "c.txt").write_text(_text(cloud))
    np.save(tmp_path / "c.npy", cloud)
    write_ply(tmp_path / "c.ply", cloud)
    write_pcd(tmp_path / "c.pcd", cloud)
    keep = np.ones(500, bool)
    keep[NAN_ROW] = False
    for name in ("c.txt", "c.npy", "c.ply", "c.pcd"):
        sample = load_point_cloud(tmp_path / name)
        assert sample.num_points == 499 and sample.meta["num_dropped"] == 1, name
        assert sample.source_rows == 500, name
        np.testing.assert_array_equal(sample.source_index, np.flatnonzero(keep))
        np.testing.assert_array_equal(sample.points, cloud[keep])
        rows = sample.to_rows(sample.points[:, 0])
        assert rows.shape == (500,) and np.flatnonzero(np.isnan(rows)).tolist() == [NAN_ROW]
        assert rows[ZERO_ROW] == 0.0


def test_grids_drop_zero_cells_and_map_rows_to_cells(tmp_path):
    xyz = np.random.default_rng(1).uniform(0.1, 1, size=(4, 5, 3)).astype(np.float32)
    xyz[0, 0] = 0.0
    xyz[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "g.tiff", xyz, photometric="rgb")
    for sample in (load_point_cloud(tmp_path / "g.tiff"), PointCloudSample.from_grid(xyz)):
        assert sample.num_points == 18 and sample.source_rows == 20
        np.testing.assert_array_equal(sample.source_index, sample.grid_index)
        grid = sample.to_rows(np.ones(18, np.float32)).reshape(sample.grid_shape)
        np.testing.assert_array_equal(np.isnan(grid), ~valid_point_mask(xyz))


def test_valid_point_mask_zero_only_missing_in_grids():
    xyz = np.array([[0, 0, 0], [np.inf, 0, 1], [1, 0, 0]], np.float32)
    np.testing.assert_array_equal(valid_point_mask(xyz), [False, False, True])
    np.testing.assert_array_equal(valid_point_mask(xyz, zero_is_missing=False), [True, False, True])
    sample = PointCloudSample.from_points(xyz, point_labels=[True, False, True])
    np.testing.assert_array_equal(sample.source_index, [0, 2])
    np.testing.assert_array_equal(sample.point_labels, [True, True])


def test_source_rows_survive_subsampling_and_are_checked(cloud):
    sample = PointCloudSample.from_points(cloud)
    prep = prepare_sample(sample, DataConfig(max_points=100), seed=0)
    assert prep.sample.num_points == 100 and prep.original is sample
    np.testing.assert_array_equal(prep.sample.source_index, sample.source_index[prep.rendered])
    with pytest.raises(ShapeError, match="source_index"):
        PointCloudSample(cloud[:2], source_rows=2, source_index=[0, 5])
    with pytest.raises(ShapeError, match="together"):
        PointCloudSample(cloud[:2], source_rows=2)


def test_probe_tells_clouds_non_clouds_and_broken_clouds_apart(tmp_path, cloud):
    (tmp_path / "README.txt").write_text("MVTec 3D-AD\n1 2 3\n")
    (tmp_path / "license.txt").write_text("")
    (tmp_path / "cloud.txt").write_text(_text(cloud[:5]))
    (tmp_path / "wide.txt").write_text("1 2 3 4 5\n")
    np.save(tmp_path / "scores.npy", np.zeros(7, np.float32))
    np.save(tmp_path / "points.npy", cloud)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    tifffile.imwrite(tmp_path / "rgb.tiff", np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    write_ply(tmp_path / "scored.ply", cloud[:5], fields={"anomaly_score": np.zeros(5)})
    for name in ("README.txt", "license.txt", "scores.npy", "other.npz", "rgb.tiff"):
        assert probe_point_cloud(tmp_path / name).not_cloud, name
    for name in ("cloud.txt", "points.npy", "scored.ply"):
        assert probe_point_cloud(tmp_path / name).not_cloud is None, name
    assert "anomaly_score" in probe_point_cloud(tmp_path / "scored.ply").fields
    # broken clouds: one line naming the file, before any full read
    whole = (tmp_path / "scored.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(whole[: len(whole) - 7])
    (tmp_path / "cut.npy").write_bytes((tmp_path / "points.npy").read_bytes()[:-12])
    (tmp_path / "cut.pcd").write_bytes(
        b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\n"
        b"POINTS 3\nDATA binary\n" + struct.pack("<4f", 1, 2, 3, 4)
    )
    (tmp_path / "garbage.ply").write_bytes(b"\x00\x01 not a ply")
    (tmp_path / "empty.ply").write_bytes(b"")
    for name, match in [("wide.txt", "3 .x y z. or 4"), ("cut.ply", "truncated"),
                        ("cut.npy", "truncated"), ("cut.pcd", "truncated"),
                        ("garbage.ply", "not a PLY"), ("empty.ply", "empty")]:  # fmt: skip
        with pytest.raises(DatasetFormatError, match=rf"{name}: .*{match}"):
            probe_point_cloud(tmp_path / name)
