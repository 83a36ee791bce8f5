"""Real3D-AD reader on the tiny fixture of DATASETS.md §6.3 (conftest.write_real3d)."""

from __future__ import annotations

import numpy as np
import pytest

from align3d_ad.data.datasets import Real3DReader, get_dataset, parse_real3d_name
from align3d_ad.errors import ConfigError, DatasetFormatError

CAT = "airplane"
SHIFT = np.array([5.0, -3.0, 2.0])  # conftest.REAL3D_SHIFT


def _reader(fixture, **options) -> Real3DReader:
    return get_dataset("real3d", fixture.root, **options)


def _load(reader, sample_id):
    return reader.load(reader.find(sample_id, category=CAT))


def test_real3d_finds_train_clouds_of_any_name_and_test_labels(real3d_tiny):
    reader = _reader(real3d_tiny)
    assert reader.categories() == [CAT] and reader.splits(CAT) == ["train", "test"]
    train = reader.refs(CAT, "train")
    assert [r.sample_id for r in train] == ["train/1_prototype", "train/2_template"]
    assert all(r.label == 0 for r in train)
    test = {
        r.sample_id: (r.label, r.defect_type, sorted(r.paths)) for r in reader.refs(CAT, "test")
    }
    assert test == {
        "test/10_good": (0, "good", ["pcd"]),
        "test/11_bulge": (1, "bulge", ["gt", "pcd"]),
        "test/12_sink_cut": (1, "sink", ["gt", "pcd"]),
    }
    assert reader.problems == []


def test_real3d_parse_name_kind_and_cut_flag():
    assert parse_real3d_name("12_sink_cut") == ("sink", ("cut",))
    assert parse_real3d_name("705_bulge") == ("bulge", ())
    assert parse_real3d_name("prototype") == (None, ())


def test_real3d_train_ascii_and_binary_pcd_points_are_native(real3d_tiny):
    reader = _reader(real3d_tiny)
    for ref in reader.refs(CAT, "train"):
        sample = reader.load(ref)
        np.testing.assert_array_equal(sample.points, real3d_tiny.samples[ref.sample_id]["points"])
        assert sample.num_points == 400 and sample.colors is None and sample.grid_shape is None
        assert sample.point_labels is not None and not sample.point_labels.any()


def test_real3d_good_scan_has_all_false_labels(real3d_tiny):
    sample = _load(_reader(real3d_tiny), "test/10_good")
    np.testing.assert_array_equal(sample.points, real3d_tiny.samples["test/10_good"]["points"])
    assert sample.label == 0 and sample.point_labels.shape == (sample.num_points,)
    assert not sample.point_labels.any() and sample.defect_type == "good"


def test_real3d_anomalous_scan_uses_txt_points_and_labels(real3d_tiny):
    reader = _reader(real3d_tiny)
    for sample_id in ("test/11_bulge", "test/12_sink_cut"):
        want = real3d_tiny.samples[sample_id]
        sample = _load(reader, sample_id)
        np.testing.assert_array_equal(sample.points, want["points"][want["order"]])
        np.testing.assert_array_equal(sample.point_labels, want["labels"][want["order"]])
        assert sample.point_labels.sum() == 12 and sample.label == 1
    assert reader.problems == []


def test_real3d_shuffled_txt_labels_mark_the_moved_points(real3d_tiny):
    sample = _load(_reader(real3d_tiny), "test/12_sink_cut")
    radius = np.linalg.norm(sample.points - SHIFT, axis=1)
    np.testing.assert_allclose(radius[sample.point_labels], 13.5, atol=1e-4)
    np.testing.assert_allclose(radius[~sample.point_labels], 15.0, atol=1e-4)
    assert sample.meta["cut"] is True and sample.defect_type == "sink"
    assert _load(_reader(real3d_tiny), "test/11_bulge").meta["cut"] is False


def test_real3d_row_count_mismatch_policy(real3d_tiny):
    gt = real3d_tiny.root / CAT / "gt" / "12_sink_cut.txt"
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:-1]))
    # default: the official protocol, the txt is the point set; the mismatch is recorded
    for reader in (_reader(real3d_tiny), _reader(real3d_tiny, gt_mismatch="use_txt")):
        sample = _load(reader, "test/12_sink_cut")
        assert sample.num_points == 169
        assert reader.problems == [
            (gt, "gt must list the 170 points of 12_sink_cut.pcd, got 169 rows; using the txt points")
        ]
    with pytest.raises(
        DatasetFormatError, match=r"12_sink_cut\.txt: gt must list the 170 points.*169 rows"
    ):
        _load(_reader(real3d_tiny, gt_mismatch="error"), "test/12_sink_cut")


def test_real3d_coordinate_mismatch_is_recorded_not_hidden(real3d_tiny):
    gt = real3d_tiny.root / CAT / "gt" / "11_bulge.txt"
    lines = gt.read_text().splitlines()
    x, y, z, label = lines[5].split()
    lines[5] = f"{float(x) + 1.0:.6f} {y} {z} {label}"
    gt.write_text("\n".join(lines) + "\n")
    reader = _reader(real3d_tiny)
    sample = _load(reader, "test/11_bulge")
    want = real3d_tiny.samples["test/11_bulge"]["points"][5]
    assert sample.points[5, 0] == pytest.approx(want[0] + 1.0, abs=1e-5)
    ((path, text),) = reader.problems
    assert path == gt and text.startswith("1 of 180 gt rows lie farther than 0.01")
    lenient = _reader(real3d_tiny, gt_tolerance=2.0)
    _load(lenient, "test/11_bulge")
    assert lenient.problems == []


def test_real3d_skips_temp_and_foreign_files_and_flags_missing_gt(real3d_tiny):
    cat = real3d_tiny.root / CAT
    (cat / "test" / "13_template.pcd").write_bytes((cat / "test" / "10_good.pcd").read_bytes())
    (cat / "test" / "notes.txt").write_text("x")
    (cat / "gt" / "99_bulge.txt").write_text("0 0 0 1\n")
    (cat / "gt" / "11_bulge.txt").unlink()
    reader = _reader(real3d_tiny)
    refs = reader.refs(CAT, "test")
    assert [r.sample_id for r in refs] == ["test/10_good", "test/11_bulge", "test/12_sink_cut"]
    assert sorted(p.name for p in reader.skipped) == [
        "13_template.pcd",
        "99_bulge.txt",
        "notes.txt",
    ]
    assert (
        cat / "test" / "11_bulge.pcd",
        "no gt/11_bulge.txt: anomalous scan gets no point labels",
    ) in reader.problems
    sample = reader.load(refs[1])
    assert sample.label == 1 and sample.point_labels is None and sample.num_points == 180


def test_real3d_bad_files_raise_with_their_name(real3d_tiny):
    cat = real3d_tiny.root / CAT
    (cat / "train" / "2_template.pcd").write_bytes(b"VERSION 0.7\nFIELDS x y\n")
    (cat / "gt" / "11_bulge.txt").write_text("1 2 3\n4 5 6\n")
    reader = _reader(real3d_tiny)
    with pytest.raises(DatasetFormatError, match="2_template.pcd"):
        _load(reader, "train/2_template")
    with pytest.raises(DatasetFormatError, match=r"11_bulge\.txt: gt must have 4 columns"):
        _load(reader, "test/11_bulge")


def test_real3d_invalid_options_raise_config_error(real3d_tiny):
    with pytest.raises(ConfigError, match="gt_mismatch must be one of"):
        _reader(real3d_tiny, gt_mismatch="ignore")
    with pytest.raises(ConfigError, match="gt_tolerance must be"):
        _reader(real3d_tiny, gt_tolerance=-1)
