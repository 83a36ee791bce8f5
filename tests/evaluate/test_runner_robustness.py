"""``test`` on damaged datasets: checked up front, one-line errors, partial metrics, views.

Datasets are synthetic ones in the real on-disk formats (MVTec 3D-AD TIFF/PNG, Real3D-AD PCD/txt),
pruned to a few samples per category and then damaged the way a user's copy would be.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.config import load_config
from align3d_ad.data.datasets.real3d import USE_TXT_FLAG
from align3d_ad.errors import ConfigError
from align3d_ad.evaluate import runner
from align3d_ad.evaluate.protocol import choose_views
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.evaluate.tables import read_results
from align3d_ad.synth import generate_dataset

ERROR = "align3d-ad test: error: "


def _test(capsys, run_dir: Path, cache: Path, dataset: str, root: Path, out: Path, *extra: str):
    code = main(["test", "--checkpoint", str(run_dir), "--dataset", dataset, "--root", str(root),
                 "--out", str(out), "--device", "cpu", "--cache-dir", str(cache),
                 *map(str, extra)])  # fmt: skip
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(ERROR)]
    assert len(errors) == (code != 0), err
    return code, errors[0][len(ERROR):] if errors else "", err


def _mvtec(src: Path, dest: Path, categories=("cookie", "dowel")) -> dict[str, str]:
    """A copy of ``categories`` with two good and two anomalous test samples each."""
    defects = {}
    for cat in categories:
        shutil.copytree(src / cat, dest / cat)
        test = dest / cat / "test"
        kept = sorted(d.name for d in test.iterdir() if d.name != "good")[0]
        for folder in test.iterdir():
            if folder.name not in ("good", kept):
                shutil.rmtree(folder)
        defects[cat] = kept
    return defects


@pytest.fixture
def mvtec(tmp_path, synth_mvtec):
    root = tmp_path / "mvtec"
    return root, _mvtec(synth_mvtec, root)


# ------------------------------------------------------------------ ground truth (defect 4)
def test_missing_gt_stops_before_anything_is_written(
    capsys, mvtec, trained_run, feature_cache, tmp_path
):
    root, defects = mvtec
    gt = root / "cookie" / "test" / defects["cookie"] / "gt" / "000.png"
    gt.unlink()
    out = tmp_path / "t"
    code, error, _ = _test(capsys, trained_run, feature_cache, "mvtec3d", root, out)
    assert code == EXIT_USER_ERROR
    assert error == (
        f"{gt}: file is missing: anomalous sample cookie/test/{defects['cookie']}/000 has no gt "
        f"mask; {runner.SKIP_HINT}"
    )
    assert not out.exists()


def test_skipped_samples_are_counted_and_a_later_failure_keeps_finished_metrics(
    capsys, mvtec, trained_run, feature_cache, tmp_path
):
    root, defects = mvtec
    (root / "cookie" / "test" / defects["cookie"] / "gt" / "000.png").unlink()
    bad = root / "dowel" / "test" / "good" / "xyz" / "000.tiff"  # a valid TIFF that is no xyz grid
    tifffile.imwrite(bad, np.zeros((8, 8), np.uint8))
    out = tmp_path / "t"
    code, error, _ = _test(capsys, trained_run, feature_cache, "mvtec3d", root, out,
                           "--categories", "cookie", "dowel", "--skip-unlabelled")  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert error.startswith(f"category dowel failed: {bad}: xyz TIFF must be a float (H, W, 3)")
    assert error.endswith(f"metrics of the categories finished before it (cookie) written to "
                          f"{out / 'metrics.json'}")  # fmt: skip
    doc = read_results(out / "metrics.json")
    skipped_id = f"test/{defects['cookie']}/000"
    assert list(doc["categories"]) == ["cookie"]
    assert doc["skipped"] == {"cookie": [skipped_id]}
    assert list(doc["failed"]) == ["dowel"] and doc["failed"]["dowel"].startswith(str(bad))
    assert doc["views"]["mvtec3d"]["source"] == "training config"
    saved = CategoryScores.load(out / "scores" / "cookie.npz")
    assert skipped_id not in saved.sample_ids and len(saved.sample_ids) == 3
    md = (out / "metrics.md").read_text()
    assert f"skipped: 1 sample(s) without ground truth (cookie: {skipped_id})" in md
    assert "**failed: dowel was not scored**" in md
    assert not (out / "scores" / "dowel.npz").exists()


def test_on_missing_gt_value_is_checked_when_the_config_is_read():
    with pytest.raises(ConfigError, match="eval.on_missing_gt must be one of error, skip, got 'dr"):
        load_config(None, ["eval.on_missing_gt=drop"])


# ------------------------------------------------------------------ up-front checks (defect 10)
def test_empty_later_category_fails_before_scoring(
    capsys, mvtec, trained_run, feature_cache, tmp_path
):
    root, _ = mvtec
    for folder in (root / "dowel" / "test").iterdir():
        shutil.rmtree(folder)
    out = tmp_path / "t"
    code, error, _ = _test(capsys, trained_run, feature_cache, "mvtec3d", root, out,
                           "--categories", "cookie", "dowel")  # fmt: skip
    assert code == EXIT_USER_ERROR
    want = "every category tested must hold test samples to score, got none in dowel"
    assert error == f"{root}: {want}"
    assert not out.exists()


def test_truncated_file_in_a_later_category_fails_before_scoring(
    capsys, mvtec, trained_run, feature_cache, tmp_path
):
    root, defects = mvtec
    bad = root / "dowel" / "test" / defects["dowel"] / "xyz" / "001.tiff"
    bad.write_bytes(bad.read_bytes()[:-100])
    out = tmp_path / "t"
    code, error, _ = _test(capsys, trained_run, feature_cache, "mvtec3d", root, out,
                           "--categories", "cookie", "dowel")  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert re.fullmatch(rf"{re.escape(str(bad))}: file truncated: the TIFF image data must end at "
                        rf"byte \d+, got a file of \d+ bytes", error)  # fmt: skip
    assert not out.exists()


def test_wrong_layout_fails_before_scoring(capsys, mvtec, trained_run, feature_cache, tmp_path):
    root, _ = mvtec
    code, error, _ = _test(capsys, trained_run, feature_cache, "real3d", root, tmp_path / "t")
    assert code == EXIT_USER_ERROR and error.startswith(f"{root}: no real3d samples found")
    assert error.endswith("(pass --dataset mvtec3d)") and not (tmp_path / "t").exists()


# ------------------------------------------------------------------ Real3D (defect 4, issue 17.6/7)
@pytest.fixture
def real3d(tmp_path):
    """Real3D-AD files of one class: one good scan, three anomalous ones (gt txt each)."""
    root = tmp_path / "real3d"
    generate_dataset(root, format="real3d", categories=["cookie"], small=True, seed=1)
    cat = root / "cookie"
    scans = sorted((cat / "test").glob("*.pcd"))
    good = [p for p in scans if "good" in p.stem]
    bad = [p for p in scans if "good" not in p.stem]
    for path in good[1:] + bad[3:]:
        path.unlink()
        (cat / "gt" / f"{path.stem}.txt").unlink(missing_ok=True)
    return root, bad[:3]


def test_real3d_missing_gt_is_one_line(capsys, real3d, trained_run, feature_cache, tmp_path):
    root, bad = real3d
    gt = root / "cookie" / "gt" / f"{bad[2].stem}.txt"
    gt.unlink()
    code, error, _ = _test(capsys, trained_run, feature_cache, "real3d", root, tmp_path / "t")
    assert code == EXIT_USER_ERROR
    assert error == (f"{gt}: file is missing: anomalous scan cookie/test/{bad[2].stem} has no gt "
                     f"point labels; {runner.SKIP_HINT}")  # fmt: skip


def test_real3d_official_protocol_views_and_runnable_hint(
    capsys, monkeypatch, real3d, trained_run, feature_cache, tmp_path
):
    root, bad = real3d
    (root / "cookie" / "gt" / f"{bad[2].stem}.txt").unlink()  # skipped with --skip-unlabelled
    short = root / "cookie" / "gt" / f"{bad[0].stem}.txt"
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:-2]))
    # gt_mismatch: error stops at the mismatch, naming a flag that runs as printed
    strict = ["--set", "eval.reader_options={gt_mismatch: error}"]
    code, error, _ = _test(capsys, trained_run, feature_cache, "real3d", root, tmp_path / "e",
                           "--skip-unlabelled", *strict)  # fmt: skip
    assert code == EXIT_USER_ERROR and str(short) in error and USE_TXT_FLAG in error
    flag = shlex.split(re.search(r"pass (--set '[^']*')", error)[1])
    assert flag == ["--set", "eval.reader_options={gt_mismatch: use_txt}"]
    used = []
    original = runner.evaluate_dataset
    monkeypatch.setattr(runner, "evaluate_dataset",
                        lambda detector, *a, **k: used.append(detector.encoder.preset.name)
                        or original(detector, *a, **k))  # fmt: skip
    for extra in (flag, []):  # the printed flag, and the default: both the official protocol
        out = tmp_path / f"t{len(used)}"
        code, _, err = _test(capsys, trained_run, feature_cache, "real3d", root, out,
                             "--skip-unlabelled", *extra)  # fmt: skip
        assert code == 0, err
        mismatch = [line for line in err.splitlines() if "gt txt differs from its PCD" in line]
        assert len(mismatch) == 1 and mismatch[0].endswith(f"1 file(s): cookie/gt/{short.name}")
        doc = json.loads((out / "metrics.json").read_text())
        labels = [f"x{a}" for a in range(-144, 145, 36)]
        assert doc["views"] == {
            "real3d": {"preset": "real3d", "source": "test dataset", "views": labels}
        }
        assert doc["skipped"] == {"cookie": [f"test/{bad[2].stem}"]}
        assert "views real3d (9 views; the test dataset's preset" in (out / "run.log").read_text()
        saved = CategoryScores.load(out / "scores" / "cookie.npz")
        assert len(saved.sample_ids) == 3
    assert used == ["real3d", "real3d"]  # the detector rendered with the test dataset's views


# ------------------------------------------------------------------ views (issue 17.7)
def test_choose_views_follows_eval_views_then_the_test_dataset():
    trained = load_config("configs/demo.yaml")  # mvtec3d data, mvtec3d views
    same = choose_views(trained, "mvtec3d")
    assert (same.preset.name, same.source, same.changed) == ("mvtec3d", "training config", False)
    other = choose_views(trained, "eyecandies")
    assert (other.preset.name, other.source, other.changed) == ("eyecandies", "test dataset", True)
    np.testing.assert_array_equal(other.preset.pre_transform, np.eye(3))  # not MVTec's flip
    chosen = choose_views(trained, "eyecandies", "real3d")
    assert (chosen.preset.name, chosen.source, chosen.changed) == ("real3d", "eval.views", True)
    listed = choose_views(trained, "mvtec3d", (("x", 0.0), ("y", 30.0)))
    assert listed.source == "eval.views" and listed.preset.labels == ("x0", "y30")
    folder = choose_views(trained, "folder")  # no preset of its own: the training views
    assert (folder.preset.name, folder.source) == ("mvtec3d", "training config")
