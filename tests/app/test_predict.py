"""Issue 12, defects 6 and 8: ``predict`` scores every cloud of a folder and nothing else, writes
one score per input row, and on a bad cloud stops with one line or records it (``--keep-going``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.app.commands import predict as predict_command
from align3d_ad.data import read_ply, read_tiff_xyz, valid_point_mask, write_ply

NAN_ROW, ZERO_ROW = 57, 411


def _predict(capsys, checkpoint: Path, *argv) -> tuple[int, str, str]:
    argv = ["predict", "--checkpoint", checkpoint, *argv, "--device", "cpu"]
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _table(folder: Path) -> list[dict[str, str]]:
    with (folder / "object_scores.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _cloud(seed: int, n: int = 500) -> np.ndarray:
    """A small bumpy sphere of ``n`` points (the detector's kind of input)."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3))
    return (0.05 * xyz / np.linalg.norm(xyz, axis=1, keepdims=True)).astype(np.float32)


def _write_txt(path: Path, xyz: np.ndarray) -> Path:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in row) for row in xyz) + "\n")
    return path


def test_txt_gets_one_score_per_row_nan_only_where_not_a_point(capsys, trained_run, tmp_path):
    xyz = _cloud(0)
    xyz[NAN_ROW] = [np.nan, 0.01, 0.02]
    xyz[ZERO_ROW] = 0.0  # a genuine point at the origin (the sphere's centre)
    path = _write_txt(tmp_path / "scan.txt", xyz)
    code, out, _ = _predict(capsys, trained_run, path, "--out", tmp_path / "p")
    assert code == 0
    assert "1 input rows unscored" in out
    scores = np.load(tmp_path / "p" / "scan.npy")
    assert scores.shape == (500,) and scores.dtype == np.float32
    assert np.flatnonzero(np.isnan(scores)).tolist() == [NAN_ROW]
    assert np.isfinite(scores[ZERO_ROW])
    (row,) = _table(tmp_path / "p")
    assert (row["status"], row["rows"], row["points"], row["unscored"]) == ("ok", "500", "499", "1")
    ply = read_ply(tmp_path / "p" / "scan.ply")  # one vertex per scored point, in input order
    np.testing.assert_array_equal(ply["anomaly_score"], scores[~np.isnan(scores)])
    np.testing.assert_array_equal(ply["z"], np.delete(xyz, NAN_ROW, axis=0)[:, 2])


def test_summary_ends_with_the_paths_and_quiet_prints_only_them(capsys, trained_run, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for seed in (1, 2):
        _write_txt(scans / f"s{seed}.txt", _cloud(seed, 300))
    code, out, _ = _predict(capsys, trained_run, scans, "--out", tmp_path / "a")
    assert code == 0
    assert out.splitlines() == ["scored 2 point clouds", f"run folder: {tmp_path / 'a'}",
                                f"html:       {tmp_path / 'a' / 'report.html'}",
                                f"scores:     {tmp_path / 'a' / 'object_scores.csv'}"]  # fmt: skip
    code, out, err = _predict(capsys, trained_run, scans, "--out", tmp_path / "b", "--quiet",
                              "--no-report")  # fmt: skip
    assert code == 0 and err == ""
    assert out.splitlines() == [f"run folder: {tmp_path / 'b'}",
                                f"scores:     {tmp_path / 'b' / 'object_scores.csv'}"]  # fmt: skip


def test_tiff_gets_its_grid_with_nan_exactly_at_missing_cells(
    capsys, trained_run, synth_mvtec, tmp_path
):
    tiff = sorted((synth_mvtec / "dowel" / "test" / "good" / "xyz").glob("*.tiff"))[0]
    xyz = read_tiff_xyz(tiff)
    assert (~valid_point_mask(xyz)).any() and valid_point_mask(xyz).any()
    code, _, _ = _predict(capsys, trained_run, tiff, "--out", tmp_path / "p")
    assert code == 0
    scores = np.load(tmp_path / "p" / f"{tiff.stem}.npy")
    assert scores.shape == xyz.shape[:2]
    np.testing.assert_array_equal(np.isnan(scores), ~valid_point_mask(xyz))
    (row,) = _table(tmp_path / "p")
    assert int(row["rows"]) == xyz.shape[0] * xyz.shape[1]
    assert int(row["unscored"]) == int((~valid_point_mask(xyz)).sum())


def test_folder_scores_clouds_only_and_reports_what_it_skipped(capsys, trained_run, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _write_txt(data / "a.txt", _cloud(1, 300))
    write_ply(data / "sub" / "b.ply", _cloud(2, 300))
    (data / "README.txt").write_text("Scans of part 7.\nSee license.txt.\n")
    (data / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    os.symlink("loop.ply", data / "loop.ply")  # a self-looping symlink
    os.symlink("..", data / "sub" / "up")  # a folder loop
    code, _, _ = _predict(capsys, trained_run, data, "--out", data / "earlier")
    assert code == 0
    clouds = [str(data / "a.txt"), str(data / "sub" / "b.ply")]
    assert [r["file"] for r in _table(data / "earlier")] == clouds
    # again, now that the earlier outputs (a.npy, a.ply, b.npy, b.ply) lie in the folder too
    code, out, err = _predict(capsys, trained_run, data, "--out", tmp_path / "p")
    assert code == 0 and "scored 2 point clouds" in out
    assert [r["file"] for r in _table(tmp_path / "p")] == clouds
    (line,) = [x for x in err.splitlines() if "skipped" in x]
    assert "skipped 8 file(s) - not point clouds: 2 (README.txt, license.txt); " in line
    assert "outputs of an earlier predict: 4 (earlier/a.npy, earlier/a.ply, earlier/b.npy, ...)" in (
        line
    )
    assert "symlink loops: 2 (loop.ply, sub/up)" in line and "--glob PATTERN" in line
    # --glob chooses the files; a chosen file that is not a cloud is an error
    code, _, _ = _predict(capsys, trained_run, data, "--glob", "sub/*.ply", "--out", tmp_path / "g")
    assert code == 0 and [r["name"] for r in _table(tmp_path / "g")] == ["b"]
    code, _, err = _predict(capsys, trained_run, data, "--glob", "*.txt", "--out", tmp_path / "h")
    assert code == EXIT_USER_ERROR and not (tmp_path / "h").exists()
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert f"{data / 'README.txt'}: not a point cloud: line 1 is not 'x y z [label]'" in line


def test_named_non_cloud_or_symlink_loop_is_an_error(capsys, trained_run, tmp_path):
    (tmp_path / "README.txt").write_text("hello\n")
    os.symlink("loop.txt", tmp_path / "loop.txt")
    for name, problem in (("README.txt", "not a point cloud"), ("loop.txt", "symlink loop")):
        code, _, err = _predict(capsys, trained_run, tmp_path / name, "--out", tmp_path / "p")
        assert code == EXIT_USER_ERROR and f"{name}: " in err and problem in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


@pytest.fixture
def mixed(tmp_path):
    """A folder with two good clouds and a cloud whose header is broken."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_txt(folder / "a.txt", _cloud(3, 300))
    (folder / "b.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n")
    _write_txt(folder / "c.txt", _cloud(4, 300))
    return folder


def test_bad_cloud_stops_before_anything_is_written(capsys, trained_run, mixed, tmp_path):
    code, out, err = _predict(capsys, trained_run, mixed, "--out", tmp_path / "p")
    assert code == EXIT_USER_ERROR and out == ""
    (line,) = err.strip().splitlines()
    assert "b.ply: PLY must start with 'ply' and have an 'end_header' line" in line
    assert "--keep-going" in line
    assert not (tmp_path / "p").exists()


def test_keep_going_records_the_bad_cloud_and_scores_the_rest(capsys, trained_run, mixed, tmp_path):
    code, out, err = _predict(capsys, trained_run, mixed, "--keep-going", "--out", tmp_path / "p")
    assert code == 1 and "scored 2 point clouds" in out and "1 point cloud(s) failed" in err
    rows = _table(tmp_path / "p")
    assert [(r["name"], r["status"]) for r in rows] == [("a", "ok"), ("b", "error"), ("c", "ok")]
    assert rows[1]["error"].startswith(f"{mixed / 'b.ply'}: PLY must start with 'ply'")
    assert rows[1]["object_score"] == "" and np.isfinite(float(rows[2]["object_score"]))
    outputs = sorted(p.name for p in (tmp_path / "p").iterdir() if p.suffix in (".npy", ".ply"))
    assert outputs == ["a.npy", "a.ply", "c.npy", "c.ply"]


def test_cloud_failing_late_stops_with_the_finished_ones_listed(
    capsys, monkeypatch, trained_run, tmp_path
):
    monkeypatch.setattr(predict_command, "PREDICT_BATCH", 1)
    folder = tmp_path / "late"
    folder.mkdir()
    _write_txt(folder / "a.txt", _cloud(5, 300))
    good = _write_txt(folder / "b.txt", _cloud(6, 300)).read_text()
    (folder / "b.txt").write_text(good + "1 2\n")  # a ragged last line: found by the full parse
    _write_txt(folder / "c.txt", _cloud(7, 300))
    code, _, err = _predict(capsys, trained_run, folder, "--out", tmp_path / "p")
    assert code == EXIT_USER_ERROR
    (line,) = err.strip().splitlines()
    assert f"{folder / 'b.txt'}: text point cloud must hold numbers only" in line
    assert "object_scores.csv lists the 1 cloud(s) finished" in line
    assert [r["name"] for r in _table(tmp_path / "p")] == ["a"]
    outputs = sorted(p.name for p in (tmp_path / "p").iterdir() if p.suffix in (".npy", ".ply"))
    assert outputs == ["a.npy", "a.ply"]
