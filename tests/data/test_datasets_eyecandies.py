"""Eyecandies reader on the tiny fixture of DATASETS.md §6.2 (conftest.write_eyecandies)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from align3d_ad.data.datasets import (
    EyecandiesReader,
    decode_eyecandies_depth,
    eyecandies_depth_to_points,
    get_dataset,
)
from align3d_ad.errors import ConfigError, DatasetFormatError

H, W = 12, 16
F = 711.11
CAT = "CandyCane"


def _reader(fixture, **options) -> EyecandiesReader:
    return get_dataset("eyecandies", fixture.root, **options)


def _ref(reader, sample_id):
    return reader.find(sample_id, category=CAT)


def _point(sample, v, u):
    return sample.points[np.flatnonzero(sample.grid_index == v * W + u)[0]]


def _decoded(raw):
    return np.float32(raw / 65535 * (0.95 - 0.85) + 0.85)


def test_eyecandies_discovers_splits_ids_and_items(eyecandies_tiny):
    reader = _reader(eyecandies_tiny)
    assert reader.categories() == [CAT]
    assert reader.splits(CAT) == ["train", "val", "test_public", "test_private"]
    ids = {split: [r.sample_id for r in reader.refs(CAT, split)] for split in reader.splits(CAT)}
    assert ids == {f"{s}": [f"{s}/{i}" for i in v] for s, v in _fixture_ids().items()}
    ref = _ref(reader, "test_public/02")
    assert {"info_depth", "bumps_mask", "image_0", "image_5", "metadata", "mask"} <= set(ref.paths)
    assert len(ref.paths) == 17 and ref.paths["info_depth"].name == "02_info_depth.yaml"
    assert len(_ref(reader, "test_private/000").paths) == 10
    labels = {r.sample_id: (r.label, r.defect_type) for r in reader.iter_refs()}
    assert labels["train/001"] == (0, "good") and labels["test_public/01"] == (0, "good")
    assert labels["test_public/03"] == (1, "bad") and labels["test_private/000"] == (None, None)
    assert reader.problems == []


def _fixture_ids():
    return {"train": ["000", "001", "002"], "val": ["00"], "test_public": ["00", "01", "02", "03"],
            "test_private": ["000"]}  # fmt: skip


def test_eyecandies_depth_decoding_is_exact(eyecandies_tiny):
    reader = _reader(eyecandies_tiny, pose="camera")
    sample = reader.load(_ref(reader, "train/000"))
    assert sample.grid_shape == (H, W) and sample.num_points == H * W
    raw = np.asarray(Image.open(sample.source)).astype(np.float64)
    np.testing.assert_array_equal(sample.to_grid(sample.points)[..., 2], _decoded(raw))
    z = sample.to_grid(sample.points)[..., 2]
    assert np.abs(z[8, 11] - 0.88) <= 0.10 / 65535 and np.abs(z[0, 0] - 0.90) <= 0.10 / 65535
    np.testing.assert_array_equal(
        decode_eyecandies_depth(np.array([0, 65535]), 0.85, 0.95), np.float32([0.85, 0.95])
    )


def test_eyecandies_back_projection_of_pixel_v3_u5(eyecandies_tiny):
    reader = _reader(eyecandies_tiny, pose="camera")
    sample = reader.load(_ref(reader, "test_public/00"))
    want = [(5 - 8) * 0.90 / F, (3 - 6) * 0.90 / F, 0.90]
    np.testing.assert_allclose(_point(sample, 3, 5), want, atol=2e-6)
    x_right = _point(sample, 3, 15)[0]  # x grows with the column, y with the row
    assert x_right > 0 > _point(sample, 3, 5)[0] and _point(sample, 11, 5)[1] > 0


def test_eyecandies_pose_world_applies_camera_to_world(eyecandies_tiny):
    world = _reader(eyecandies_tiny)
    camera = _reader(eyecandies_tiny, pose="camera")
    moved_w = world.load(_ref(world, "train/001"))
    moved_c = camera.load(_ref(camera, "train/001"))
    np.testing.assert_allclose(
        moved_w.points - moved_c.points, np.tile([0.1, 0, 0], (H * W, 1)), atol=1e-6
    )
    np.testing.assert_allclose(
        _point(moved_w, 3, 5), [(5 - 8) * 0.9 / F + 0.1, (3 - 6) * 0.9 / F, 0.9], atol=2e-6
    )
    assert moved_w.meta["frame"] == "world" and moved_w.meta["pose"][0, 3] == pytest.approx(0.1)
    same_w = world.load(_ref(world, "train/000"))
    same_c = camera.load(_ref(camera, "train/000"))
    np.testing.assert_array_equal(same_w.points, same_c.points)


def test_eyecandies_depth_to_points_rotation_and_missing():
    depth = np.full((2, 4), 2.0)
    depth[0, 0] = 0.0
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    xyz = eyecandies_depth_to_points(depth, pose=rot, focal=2.0)
    assert np.isnan(xyz[0, 0]).all()
    # pixel (v=1, u=3): camera (3-2)*2/2 = 1, (1-1)*2/2 = 0, 2 -> rotated (0, 1, 2)
    np.testing.assert_allclose(xyz[1, 3], [0.0, 1.0, 2.0], atol=1e-7)


def test_eyecandies_colours_come_from_image_index(eyecandies_tiny):
    for index, blue in ((None, 200), (4, 160), (0, 0)):
        reader = (
            _reader(eyecandies_tiny)
            if index is None
            else _reader(eyecandies_tiny, image_index=index)
        )
        sample = reader.load(_ref(reader, "val/00"))
        rows, cols = np.divmod(sample.grid_index, W)
        np.testing.assert_allclose(
            sample.colors * 255, np.stack([rows * 10, cols * 10, 0 * rows + blue], 1), atol=1e-4
        )


def test_eyecandies_labels_and_point_labels(eyecandies_tiny):
    reader = _reader(eyecandies_tiny)
    for ref in reader.refs(CAT, "test_public"):
        want = eyecandies_tiny.samples[ref.sample_id]
        sample = reader.load(ref)
        assert sample.label == want["label"] == int(want["mask"].any())
        np.testing.assert_array_equal(sample.to_grid(sample.point_labels), want["mask"])
        assert sorted(sample.meta["anomaly_types"]) == want["kinds"]
        assert sample.defect_type == ("bad" if want["label"] else "good")
    train = reader.load(_ref(reader, "train/002"))
    assert train.label == 0 and not train.point_labels.any()
    assert reader.problems == []


def test_eyecandies_test_private_is_unlabelled(eyecandies_tiny):
    reader = _reader(eyecandies_tiny)
    sample = reader.load(_ref(reader, "test_private/000"))
    assert (sample.label, sample.point_labels, sample.defect_type) == (None, None, None)
    assert sample.num_points == H * W and sample.colors is not None


def test_eyecandies_metadata_mask_disagreement_is_recorded(eyecandies_tiny):
    data = eyecandies_tiny.root / CAT / "test_public" / "data"
    (data / "01_metadata.yaml").write_text("anomalous: 1\n")
    reader = _reader(eyecandies_tiny)
    sample = reader.load(_ref(reader, "test_public/01"))
    assert sample.label == 1 and not sample.point_labels.any()
    assert reader.problems == [
        (
            data / "01_mask.png",
            "mask has 0 anomalous pixels but metadata says anomalous: 1; label taken from metadata",
        )
    ]


def test_eyecandies_missing_items_raise_naming_the_file(eyecandies_tiny):
    data = eyecandies_tiny.root / CAT / "test_public" / "data"
    (data / "01_depth.png").unlink()
    (data / "02_mask.png").unlink()
    reader = _reader(eyecandies_tiny)
    with pytest.raises(DatasetFormatError, match=r"01_depth\.png: file is missing"):
        reader.load(_ref(reader, "test_public/01"))
    with pytest.raises(DatasetFormatError, match=r"02_mask\.png: file is missing"):
        reader.load(_ref(reader, "test_public/02"))
    reader = _reader(eyecandies_tiny, image_index=3)
    (data / "00_image_3.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"00_image_3\.png"):
        reader.load(_ref(reader, "test_public/00"))


def test_eyecandies_bad_names_and_files_are_reported(eyecandies_tiny):
    data = eyecandies_tiny.root / CAT / "val" / "data"
    (data / "readme.txt").write_text("x")
    (data / "ab_depth.png").write_bytes(b"x")
    (data / "00_depth.png").write_bytes(Image.open(data / "00_image_0.png").convert("L").tobytes())
    reader = _reader(eyecandies_tiny)
    assert [r.sample_id for r in reader.refs(CAT, "val")] == ["val/00"]
    assert sorted(p.name for p in reader.skipped) == ["ab_depth.png", "readme.txt"]
    with pytest.raises(DatasetFormatError, match="00_depth.png"):
        reader.load(_ref(reader, "val/00"))


def test_eyecandies_eight_bit_depth_and_bad_yaml_raise(eyecandies_tiny):
    data = eyecandies_tiny.root / CAT / "train" / "data"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(data / "000_depth.png")
    (data / "001_info_depth.yaml").write_text("normalization: {min: 0.9}\n")
    (data / "002_pose.txt").write_text("1 0 0\n0 1 0\n")
    reader = _reader(eyecandies_tiny)
    with pytest.raises(DatasetFormatError, match=r"000_depth\.png: depth must be a 16-bit"):
        reader.load(_ref(reader, "train/000"))
    with pytest.raises(DatasetFormatError, match=r"001_info_depth\.yaml: normalization must be"):
        reader.load(_ref(reader, "train/001"))
    with pytest.raises(DatasetFormatError, match=r"002_pose\.txt: pose must be"):
        reader.load(_ref(reader, "train/002"))


def test_eyecandies_ids_parse_as_integers_of_any_width(eyecandies_tiny):
    data = eyecandies_tiny.root / CAT / "val" / "data"
    for path in sorted(data.iterdir()):
        path.rename(data / path.name.replace("00_", "10_", 1))
    for path in sorted(data.glob("10_*")):
        (data / path.name.replace("10_", "9_", 1)).write_bytes(path.read_bytes())
    reader = _reader(eyecandies_tiny)
    assert [r.sample_id for r in reader.refs(CAT, "val")] == ["val/9", "val/10"]
    assert reader.load(_ref(reader, "val/9")).num_points == H * W


def test_eyecandies_invalid_options_raise_config_error(eyecandies_tiny):
    with pytest.raises(ConfigError, match="image_index must be"):
        _reader(eyecandies_tiny, image_index=6)
    with pytest.raises(ConfigError, match="pose must be one of"):
        _reader(eyecandies_tiny, pose="inverse")
    with pytest.raises(ConfigError, match=r"among \['image_index', 'pose', 'up'\].*\['focal'\]"):
        _reader(eyecandies_tiny, focal=700)
