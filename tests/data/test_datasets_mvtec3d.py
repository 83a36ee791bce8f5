"""MVTec 3D-AD reader on the tiny fixture of DATASETS.md §6.1 (conftest.write_mvtec3d)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from align3d_ad.data.datasets import MVTec3DReader, get_dataset
from align3d_ad.errors import ConfigError, DatasetFormatError

H, W = 12, 16


def _reader(fixture) -> MVTec3DReader:
    return get_dataset("mvtec3d", fixture.root)


def test_mvtec3d_discovers_splits_and_ignores_plain_files(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    assert reader.categories() == ["bagel"]
    assert reader.splits("bagel") == ["train", "validation", "test"]
    counts = {split: len(reader.refs("bagel", split)) for split in reader.splits("bagel")}
    assert counts == {"train": 2, "validation": 1, "test": 4}
    assert reader.problems == [] and reader.skipped == []


def test_mvtec3d_refs_have_unique_ids_labels_and_defects(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    refs = [ref for split in reader.splits("bagel") for ref in reader.refs("bagel", split)]
    ids = [ref.sample_id for ref in refs]
    assert len(set(ids)) == len(ids) == 7
    assert sorted(ids) == sorted(mvtec3d_tiny.samples)
    test = {ref.sample_id: ref for ref in reader.refs("bagel", "test")}
    assert [ref.sample_id for ref in reader.refs("bagel", "test")] == sorted(test)
    assert {k: (r.label, r.defect_type) for k, r in test.items()} == {
        "test/combined/000": (1, "combined"),
        "test/crack/000": (1, "crack"),
        "test/good/000": (0, "good"),
        "test/hole/000": (1, "hole"),
    }
    assert set(test["test/crack/000"].paths) == {"xyz", "rgb", "gt"}
    assert set(reader.refs("bagel", "train")[0].paths) == {"xyz", "rgb"}


def test_mvtec3d_load_matches_written_grid_without_transpose(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    for split in reader.splits("bagel"):
        for ref in reader.refs("bagel", split):
            want = mvtec3d_tiny.samples[ref.sample_id]
            sample = reader.load(ref)
            assert sample.grid_shape == (H, W)
            assert sample.num_points == H * W - want["missing"]
            np.testing.assert_array_equal(
                sample.points, want["xyz"].reshape(-1, 3)[sample.grid_index]
            )
            rows, cols = np.divmod(sample.grid_index, W)
            np.testing.assert_allclose(
                sample.colors * 255, np.stack([rows * 10, cols * 10, 0 * rows + 77], 1), atol=1e-4
            )
            gt = want["gt"] if want["gt"] is not None else np.zeros((H, W))
            np.testing.assert_array_equal(
                sample.point_labels, gt.reshape(-1)[sample.grid_index] > 0
            )
            assert (sample.label, sample.defect_type) == (want["label"], want["defect"])
            assert sample.category == "bagel" and sample.sample_id == ref.sample_id


def test_mvtec3d_known_coordinates_of_a_pixel(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    sample = reader.load(reader.refs("bagel", "train")[0])
    k = np.flatnonzero(sample.grid_index == 2 * W + 13)[0]  # row 2, column 13: background
    np.testing.assert_allclose(
        sample.points[k], [(13 - 7.5) * 0.0005, (2 - 5.5) * 0.0005, 0.5], rtol=1e-6
    )
    k = np.flatnonzero(sample.grid_index == 4 * W + 5)[0]  # row 4, column 5: object, 1 cm closer
    np.testing.assert_allclose(
        sample.points[k], [(5 - 7.5) * 0.0005, (4 - 5.5) * 0.0005, 0.49], rtol=1e-6
    )


def test_mvtec3d_gt_253_254_255_are_all_anomalous(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    counts = {
        ref.defect_type: int(reader.load(ref).point_labels.sum())
        for ref in reader.refs("bagel", "test")
    }
    # crack: 3x3 of 255 minus missing (5,6); hole: 3x3 of 254 minus (7,10), (8,11);
    # combined: 2x2 of 255 + 2x2 of 253 + two diagonal 255 pixels.
    assert counts == {"good": 0, "crack": 8, "hole": 7, "combined": 10}


def test_mvtec3d_zero_and_nan_points_are_dropped(mvtec3d_tiny):
    reader = _reader(mvtec3d_tiny)
    sample = reader.load(reader.refs("bagel", "validation")[0])
    assert sample.num_points == H * W - 6
    assert np.isfinite(sample.points).all() and (sample.points != 0).any(axis=1).all()
    assert {0, 15, 6 * W + 3, 5 * W + 6}.isdisjoint(sample.grid_index.tolist())


def test_mvtec3d_root_may_be_the_wrapper_parent_and_manifest_is_ignored(mvtec3d_tiny):
    (mvtec3d_tiny.root / "synth_manifest.json").write_text(json.dumps({"categories": {}}))
    for root in (mvtec3d_tiny.root, mvtec3d_tiny.root.parent):
        reader = MVTec3DReader(root)
        assert reader.root == mvtec3d_tiny.root
        assert reader.categories() == ["bagel"] and reader.problems == []


def test_mvtec3d_non_category_folder_is_recorded(mvtec3d_tiny):
    (mvtec3d_tiny.root / "docs").mkdir()
    reader = _reader(mvtec3d_tiny)
    assert reader.categories() == ["bagel"]
    assert reader.skipped == [mvtec3d_tiny.root / "docs"]


def test_mvtec3d_shape_mismatch_names_the_file(mvtec3d_tiny):
    folder = mvtec3d_tiny.root / "bagel" / "test" / "crack"
    Image.fromarray(np.zeros((H, W - 1, 3), np.uint8)).save(folder / "rgb" / "000.png")
    Image.fromarray(np.zeros((W, H), np.uint8)).save(folder.parent / "hole" / "gt" / "000.png")
    reader = _reader(mvtec3d_tiny)
    refs = {ref.defect_type: ref for ref in reader.refs("bagel", "test")}
    with pytest.raises(DatasetFormatError, match=r"crack/rgb/000\.png.*12x16.*\(12, 15, 3\)"):
        reader.load(refs["crack"])
    with pytest.raises(DatasetFormatError, match=r"hole/gt/000\.png.*12x16.*\(16, 12\)"):
        reader.load(refs["hole"])


def test_mvtec3d_missing_gt_is_a_problem_and_gives_no_point_labels(mvtec3d_tiny):
    test = mvtec3d_tiny.root / "bagel" / "test"
    (test / "crack" / "gt" / "000.png").unlink()
    for path in (test / "hole" / "gt").iterdir():
        path.unlink()
    (test / "hole" / "gt").rmdir()
    (test / "good" / "gt" / "000.png").unlink()
    reader = _reader(mvtec3d_tiny)
    refs = {ref.defect_type: ref for ref in reader.refs("bagel", "test")}
    problems = {(p.relative_to(test).as_posix(), text.split(":")[0]) for p, text in reader.problems}
    assert problems == {("crack/xyz/000.tiff", "no gt/000.png"), ("hole", "no gt/ folder")}
    crack = reader.load(refs["crack"])
    assert crack.label == 1 and crack.point_labels is None
    good = reader.load(refs["good"])
    assert good.label == 0 and not good.point_labels.any()


def test_mvtec3d_suspicious_masks_are_recorded(mvtec3d_tiny):
    test = mvtec3d_tiny.root / "bagel" / "test"
    bad = np.zeros((H, W), np.uint8)
    bad[0, 1] = 255
    Image.fromarray(bad).save(test / "good" / "gt" / "000.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(test / "crack" / "gt" / "000.png")
    reader = _reader(mvtec3d_tiny)
    for ref in reader.refs("bagel", "test"):
        reader.load(ref)
    texts = {p.parent.parent.name: text for p, text in reader.problems}
    assert texts["good"] == "gt of a good sample has 1 non-zero pixels"
    assert texts["crack"] == "gt of an anomalous sample is all zero"


def test_mvtec3d_orphans_and_stray_files_are_skipped(mvtec3d_tiny):
    folder = mvtec3d_tiny.root / "bagel" / "train" / "good"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "rgb" / "007.png")
    (folder / "xyz" / "notes.txt").write_text("x")
    reader = _reader(mvtec3d_tiny)
    assert len(reader.refs("bagel", "train")) == 2
    assert sorted(p.name for p in reader.skipped) == ["007.png", "notes.txt"]
    assert all(text.startswith("skipped: ") for _, text in reader.problems)


def test_mvtec3d_unreadable_tiff_raises_with_file_name(mvtec3d_tiny):
    path = mvtec3d_tiny.root / "bagel" / "train" / "good" / "xyz" / "001.tiff"
    path.write_bytes(b"not a tiff at all")
    reader = _reader(mvtec3d_tiny)
    with pytest.raises(DatasetFormatError, match="001.tiff"):
        reader.load(reader.refs("bagel", "train")[1])
    tifffile.imwrite(path, np.zeros((H, W), np.float32))
    with pytest.raises(DatasetFormatError, match="001.tiff"):
        reader.load(reader.refs("bagel", "train")[1])


def test_mvtec3d_unknown_names_raise_config_error(mvtec3d_tiny, tmp_path):
    reader = _reader(mvtec3d_tiny)
    with pytest.raises(ConfigError, match=r"category must be one of \['bagel'\].*'tire'"):
        reader.refs("tire", "test")
    with pytest.raises(ConfigError, match=r"split must be one of.*'val'"):
        reader.refs("bagel", "val")
    with pytest.raises(DatasetFormatError, match="folder does not exist"):
        MVTec3DReader(tmp_path / "nowhere")
    assert reader.find("bagel/test/hole/000").defect_type == "hole"
    with pytest.raises(ConfigError, match="sample_id must name"):
        reader.find("test/hole/999", category="bagel")
