"""Checks a reader runs before a long job: layout, ground truth, file headers, unreadable entries.

Fixtures are the real on-disk formats (tests/data/conftest.py); every defect is made the way a
user's copy would have it (a truncated download, a deleted gt file, a looping symlink).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.data import get_dataset, write_pcd
from align3d_ad.data.datasets._headers import check_file
from align3d_ad.data.datasets.real3d import USE_TXT_FLAG
from align3d_ad.data.inspect import inspect_dataset
from align3d_ad.errors import DatasetFormatError
from align3d_ad.synth import generate_dataset


def _refs(reader):
    return list(reader.iter_refs())


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize(
    ("fixture", "wrong", "right"),
    [("mvtec3d_tiny", "real3d", "mvtec3d"), ("real3d_tiny", "mvtec3d", "real3d"),
     ("eyecandies_tiny", "real3d", "eyecandies"), ("mvtec3d_tiny", "eyecandies", "mvtec3d")],
)  # fmt: skip
def test_wrong_reader_says_the_layout_does_not_match(request, fixture, wrong, right):
    root = request.getfixturevalue(fixture).root
    with pytest.raises(DatasetFormatError) as info:
        inspect_dataset(wrong, root)
    text = str(info.value)
    assert text.startswith(f"{root}: no {wrong} samples found: the folder does not have the ")
    assert text.endswith(f"it looks like a {right} dataset (pass --dataset {right})")
    assert inspect_dataset(right, root).to_dict()["categories"]  # the right reader still works


def test_inspect_cli_on_a_wrong_layout_is_one_line_and_non_zero(capsys, tmp_path):
    root = tmp_path / "mvtec"
    generate_dataset(root, format="mvtec3d", categories=["cookie"], small=True)
    code = main(["inspect", "--dataset", "real3d", "--root", str(root)])
    out, err = capsys.readouterr()
    assert code == EXIT_USER_ERROR and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no real3d samples found" in err and "pass --dataset mvtec3d" in err


def test_right_layout_without_sample_files_says_so(mvtec3d_tiny):
    for tiff in mvtec3d_tiny.root.rglob("*.tiff"):
        tiff.unlink()
    with pytest.raises(DatasetFormatError, match=r"no mvtec3d samples found: its folders hold no"):
        get_dataset("mvtec3d", mvtec3d_tiny.root).check_layout()


def test_empty_folder_has_no_layout_hint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no real3d samples found.*\(<class>/\{train,"):
        inspect_dataset("real3d", tmp_path / "empty")


# ------------------------------------------------------------------ unreadable entries
LOOP_TEXT = "symlink loops (it points back to itself)"
LOOPS = {
    "mvtec3d": ("mvtec3d_tiny", "bagel/test/crack/xyz/001.tiff"),
    "real3d": ("real3d_tiny", "airplane/test/13_bulge.pcd"),
    "eyecandies": ("eyecandies_tiny", "CandyCane/test_public/data/04_depth.png"),
    "folder": ("folder_tiny", "a/loop.pcd"),
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_self_looping_symlink_is_skipped_and_reported(request, caplog, name):
    fixture, where = LOOPS[name]
    root = request.getfixturevalue(fixture).root
    loop = root / where
    os.symlink(loop.name, loop)  # points to itself
    with caplog.at_level(logging.WARNING, logger="align3d_ad"):
        reader = get_dataset(name, root)
        refs = _refs(reader)
    assert loop not in [p for ref in refs for p in ref.paths.values()]
    assert loop in reader.skipped
    assert (loop, f"skipped: {LOOP_TEXT}") in reader.problems
    assert any(str(loop) in r.getMessage() and "loops" in r.getMessage() for r in caplog.records)
    if name != "folder":
        report = inspect_dataset(name, root).to_dict()
        problem = {"path": str(loop), "problem": f"skipped: {LOOP_TEXT}"}
        assert problem in report["problems"] and report["skipped"] >= 1


def test_broken_symlink_category_is_reported(mvtec3d_tiny):
    os.symlink(mvtec3d_tiny.root / "gone", mvtec3d_tiny.root / "carrot")
    reader = get_dataset("mvtec3d", mvtec3d_tiny.root)
    assert reader.categories() == ["bagel"]
    assert reader.problems == [
        (mvtec3d_tiny.root / "carrot", "skipped: broken symlink (its target does not exist)")
    ]


# ------------------------------------------------------------------ file headers
def _every_file(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fixture", ["mvtec3d_tiny", "real3d_tiny", "eyecandies_tiny"])
def test_intact_files_pass_the_header_check(request, fixture):
    for path in _every_file(request.getfixturevalue(fixture).root):
        check_file(path)  # raises on a false alarm


@pytest.mark.parametrize(
    ("fixture", "suffix"),
    [("mvtec3d_tiny", ".tiff"), ("mvtec3d_tiny", ".png"), ("eyecandies_tiny", ".png"),
     ("real3d_tiny", ".pcd")],
)  # fmt: skip
def test_truncated_files_are_found_from_their_headers(request, fixture, suffix):
    files = [p for p in _every_file(request.getfixturevalue(fixture).root) if p.suffix == suffix]
    if suffix == ".pcd":  # ascii PCDs have no size in their header; binary ones do
        files = [p for p in files if b"DATA binary" in p.read_bytes()[:400]]
    assert files
    for path in files:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 40])
        truncated = r"file truncated: .* must end at byte \d+, got a file of \d+ bytes"
        with pytest.raises(DatasetFormatError, match=truncated) as info:
            check_file(path)
        assert info.value.path == path
        path.write_bytes(raw)
        check_file(path)


def test_compressed_pcd_and_empty_or_missing_files(tmp_path):
    path = tmp_path / "c.pcd"
    write_pcd(path, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32),
              encoding="binary_compressed")  # fmt: skip
    check_file(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(DatasetFormatError, match="binary_compressed block must end at byte"):
        check_file(path)
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"e\.png: file is empty"):
        check_file(tmp_path / "e.png")
    with pytest.raises(DatasetFormatError, match=r"none\.tiff: file cannot be read"):
        check_file(tmp_path / "none.tiff")


def test_a_tiff_whose_ifd_is_cut_off_is_refused(tmp_path):
    path = tmp_path / "x.tiff"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.float32), photometric="rgb")
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(DatasetFormatError, match=r"x\.tiff: cannot read TIFF"):
        check_file(path)


# ------------------------------------------------------------------ ground truth
MISSING = {
    "mvtec3d": ("mvtec3d_tiny", "test", "bagel/test/crack/gt/000.png",
                "anomalous sample bagel/test/crack/000 has no gt mask"),
    "real3d": ("real3d_tiny", "test", "airplane/gt/11_bulge.txt",
               "anomalous scan airplane/test/11_bulge has no gt point labels"),
    "eyecandies": ("eyecandies_tiny", "test_public", "CandyCane/test_public/data/02_mask.png",
                   "sample CandyCane/test_public/02 has no mask"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MISSING))
def test_missing_labels_name_the_missing_file(request, name):
    fixture, split, where, problem = MISSING[name]
    root = request.getfixturevalue(fixture).root
    reader = get_dataset(name, root)
    (category,) = reader.categories()
    assert not any(map(reader.missing_labels, reader.refs(category, split)))
    (root / where).unlink()
    reader = get_dataset(name, root)
    missing = [m for m in map(reader.missing_labels, reader.refs(category, split)) if m]
    assert missing == [(root / where, f"file is missing: {problem}")]
    if name == "eyecandies":
        private = reader.refs("CandyCane", "test_private")
        assert reader.missing_labels(private[0])[1] == (
            "sample CandyCane/test_private/000 has no label (test_private is unlabelled)"
        )


# ------------------------------------------------------------------ Real3D gt mismatches
def test_real3d_lists_every_mismatch_in_one_warning(real3d_tiny, caplog):
    cat = real3d_tiny.root / "airplane"
    for stem in ("11_bulge", "12_sink_cut"):
        gt = cat / "gt" / f"{stem}.txt"
        gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:-3]))
    reader = get_dataset("real3d", real3d_tiny.root)  # default: the official protocol
    with caplog.at_level(logging.WARNING, logger="align3d_ad"):
        for ref in reader.refs("airplane", "test"):
            reader.load(ref)
        assert caplog.records == []  # quiet while loading...
        reader.flush_warnings()
    (record,) = caplog.records  # ...then one warning naming both files
    assert "2 file(s): airplane/gt/11_bulge.txt, airplane/gt/12_sink_cut.txt" in record.getMessage()
    assert [p.name for p, _ in reader.problems] == ["11_bulge.txt", "12_sink_cut.txt"]
    report = inspect_dataset("real3d", real3d_tiny.root).to_dict()
    listed = [p["path"] for p in report["problems"]]
    assert listed == [str(cat / "gt" / "11_bulge.txt"), str(cat / "gt" / "12_sink_cut.txt")]


def test_real3d_error_policy_names_the_runnable_flag(real3d_tiny):
    gt = real3d_tiny.root / "airplane" / "gt" / "11_bulge.txt"
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:-1]))
    reader = get_dataset("real3d", real3d_tiny.root, gt_mismatch="error")
    with pytest.raises(DatasetFormatError) as info:
        reader.load(reader.find("airplane/test/11_bulge"))
    assert str(info.value).endswith(f"pass {USE_TXT_FLAG})")
    assert USE_TXT_FLAG == "--set 'eval.reader_options={gt_mismatch: use_txt}'"


def test_real3d_folder_inside_a_split_is_reported(real3d_tiny):
    extra = real3d_tiny.root / "airplane" / "test" / "more"
    extra.mkdir()
    write_pcd(extra / "20_good.pcd", np.ones((3, 3), np.float32), encoding="ascii")
    reader = get_dataset("real3d", real3d_tiny.root)
    assert len(reader.refs("airplane", "test")) == 3
    assert extra in reader.skipped
