"""``calibrate`` and ``predict --calibration``: thresholds -> verdicts; CSV, masks and PLY agree;
bad input stops with one line and writes nothing."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.data import read_ply, write_tiff_xyz


def _run(capsys, *argv, quiet: bool = True) -> tuple[int, str, str]:
    code = main([str(a) for a in [*argv, "--device", "cpu", *(["--quiet"] if quiet else [])]])
    out, err = capsys.readouterr()
    return code, out, err


def _table(folder: Path) -> list[dict[str, str]]:
    with (folder / "object_scores.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory, trained_run, synth_mvtec):
    out = tmp_path_factory.mktemp("cal") / "cal"
    normals = synth_mvtec / "cookie" / "train" / "good" / "xyz"
    code = main([str(a) for a in ["calibrate", "--checkpoint", trained_run, "--normals", normals,
                                  "--out", out, "--false-alarm-rate", "0.34", "--device", "cpu",
                                  "--quiet"]])  # fmt: skip
    assert code == 0
    return out


def test_calibration_records_what_it_is_valid_for(calibration, trained_run, synth_mvtec):
    doc = json.loads((calibration / "calibration.json").read_text())
    assert doc["K"] == 3 and len(doc["references"]) == 3
    assert doc["backbone"]["name"] == "tiny-clip" and doc["views"]["preset"] == "mvtec3d"
    assert doc["checkpoint"]["fingerprint"].startswith("sha256:")
    # 0.34 of 3 normals: 1 may be flagged -> the threshold is the second largest LOO score
    loo = sorted(r["loo_object_score"] for r in doc["references"])
    assert doc["thresholds"]["object"] == {"value": loo[1], "how": "quantile", "count": 3}
    assert doc["normal_object_scores"] == [r["loo_object_score"] for r in doc["references"]]
    assert min(loo) > 0  # leave-one-out: no reference is scored against itself
    assert (calibration / "references.safetensors").is_file()


def test_verdicts_masks_and_ply_agree(capsys, calibration, trained_run, synth_mvtec, tmp_path):
    files = sorted((synth_mvtec / "cookie" / "test").glob("*/xyz/*.tiff"))[:5]
    code, _, _ = _run(capsys, "predict", "--checkpoint", trained_run, "--calibration",
                      calibration, *files, "--out", tmp_path / "first")  # fmt: skip
    assert code == 0
    first = _table(tmp_path / "first")
    scores = sorted(float(r["object_score"]) for r in first)
    values = np.sort(np.unique(np.load(tmp_path / "first" / f"{first[0]['name']}.npy")))
    values = values[np.isfinite(values)]
    point_t = float((values[-100] + values[-101]) / 2)  # 100 distinct scores above it
    # thresholds between known scores: exactly the two highest objects anomalous
    cal = tmp_path / "cal"
    shutil.copytree(calibration, cal)
    doc = json.loads((cal / "calibration.json").read_text())
    doc["thresholds"]["object"]["value"] = (scores[2] + scores[3]) / 2
    doc["thresholds"]["point"]["value"] = point_t
    (cal / "calibration.json").write_text(json.dumps(doc))
    code, out, _ = _run(capsys, "predict", "--checkpoint", trained_run, "--calibration", cal,
                        *files, "--out", tmp_path / "second", quiet=False)  # fmt: skip
    assert code == 0
    assert "verdicts: 3 ok, 2 anomalous" in out.splitlines()
    rows = _table(tmp_path / "second")
    for row in rows:
        expect = "anomalous" if float(row["object_score"]) > (scores[2] + scores[3]) / 2 else "ok"
        assert row["verdict"] == expect
        assert float(row["point_threshold"]) == pytest.approx(point_t, abs=1e-6)
        grid = np.load(tmp_path / "second" / f"{row['name']}.npy")
        mask = np.load(tmp_path / "second" / f"{row['name']}_mask.npy")
        assert mask.dtype == bool and mask.shape == grid.shape
        np.testing.assert_array_equal(mask, np.nan_to_num(grid, nan=-np.inf) > point_t)
        ply = read_ply(tmp_path / "second" / f"{row['name']}.ply")
        flagged = ply["anomalous"].astype(bool)
        np.testing.assert_array_equal(flagged, ply["anomaly_score"] > point_t)
        assert int(row["anomalous_points"]) == mask.sum() == flagged.sum() > 0
        if row["name"] == first[0]["name"]:
            assert mask.sum() >= 100
    assert sum(r["verdict"] == "anomalous" for r in rows) == 2
    # the report draws the calibrated thresholds: the viewer's masks start at the point threshold
    page = (tmp_path / "second" / "report.html").read_text()
    clouds = json.loads(re.search(r'id="a3d-clouds">(.*?)</script>', page).group(1))
    assert clouds and all(c["threshold"] == pytest.approx(point_t) for c in clouds)
    assert f"point threshold {point_t:.6g}" in page and "K = 3" in page


def test_python_api_gives_verdict_and_mask(calibration, trained_run, synth_mvtec):
    from align3d_ad import Detector, load_point_cloud

    det = Detector.from_checkpoint(trained_run, device="cpu", calibration=calibration)
    cloud = load_point_cloud(synth_mvtec / "cookie" / "test" / "good" / "xyz" / "000.tiff")
    pred = det.predict(cloud)
    assert pred.verdict in ("ok", "anomalous")
    assert pred.verdict == ("anomalous" if pred.object_score > det.calibration.object_threshold.value
                            else "ok")  # fmt: skip
    np.testing.assert_array_equal(pred.mask, pred.point_scores > det.calibration.point_threshold.value)
    assert "fewshot" in pred.branch_point_scores
    zero = Detector.from_checkpoint(trained_run, device="cpu").predict(cloud)
    assert zero.verdict is None and zero.mask is None and "fewshot" not in zero.branch_point_scores
    assert not np.allclose(zero.point_scores, pred.point_scores)


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_inputs_stop_with_one_line_and_write_nothing(
    capsys, trained_run, synth_mvtec, tmp_path
):
    normals = synth_mvtec / "cookie" / "train" / "good" / "xyz"
    base = ["calibrate", "--checkpoint", trained_run, "--out", tmp_path / "cal"]
    code, _, err = _run(capsys, *base, "--normals", normals, "--false-alarm-rate", "1.5")
    assert code == EXIT_USER_ERROR and "(0, 1)" in _one_line(err)
    code, _, err = _run(capsys, *base, "--normals", normals / "000.tiff")
    assert code == EXIT_USER_ERROR and "at least 2" in _one_line(err)
    code, _, err = _run(capsys, *base, "--normals", tmp_path / "nothing_here")
    assert code == EXIT_USER_ERROR and "nothing_here" in _one_line(err)
    invalid = tmp_path / "invalid"
    invalid.mkdir()
    shutil.copy(normals / "000.tiff", invalid / "000.tiff")
    write_tiff_xyz(invalid / "001.tiff", np.zeros((16, 16, 3), np.float32))  # no valid point
    code, _, err = _run(capsys, *base, "--normals", invalid)
    assert code == EXIT_USER_ERROR and "001.tiff" in _one_line(err)
    assert not (tmp_path / "cal").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["invalid"]  # no half-written folder


def test_calibration_of_another_checkpoint_is_refused(
    capsys, calibration, trained_run, synth_mvtec, tmp_path
):
    other = tmp_path / "other_run"
    shutil.copytree(trained_run, other)
    doc = json.loads((other / "checkpoint.json").read_text())
    doc["config"]["method"]["alpha"] = 0.25  # another checkpoint: its scores differ
    (other / "checkpoint.json").write_text(json.dumps(doc))
    cloud = synth_mvtec / "cookie" / "test" / "good" / "xyz" / "000.tiff"
    code, _, err = _run(capsys, "predict", "--checkpoint", other, "--calibration", calibration,
                        cloud, "--out", tmp_path / "pred")  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert "calibrate" in _one_line(err) and "checkpoint" in err
    cal = tmp_path / "cal_bb"
    shutil.copytree(calibration, cal)
    doc = json.loads((cal / "calibration.json").read_text())
    doc["backbone"]["fingerprint"] = "params-sha256:0000"
    (cal / "calibration.json").write_text(json.dumps(doc))
    code, _, err = _run(capsys, "predict", "--checkpoint", trained_run, "--calibration", cal,
                        cloud, "--out", tmp_path / "pred2")  # fmt: skip
    assert code == EXIT_USER_ERROR and "backbone" in _one_line(err)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "pred2").exists()


def test_defective_scans_pick_the_f1_best_object_threshold(
    capsys, trained_run, synth_mvtec, tmp_path
):
    normals = synth_mvtec / "cookie" / "train" / "good" / "xyz"
    bad = sorted((synth_mvtec / "cookie" / "test").glob("[ch]*/xyz/*.tiff"))[:3]
    code, out, _ = _run(capsys, "calibrate", "--checkpoint", trained_run, "--normals", normals,
                        "--anomalous", *bad, "--out", tmp_path / "cal")  # fmt: skip
    assert code == 0 and "(f1)" in out
    doc = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert doc["thresholds"]["object"]["how"] == "f1"
    assert doc["thresholds"]["object"]["count"] == 6  # 3 leave-one-out normals + 3 defective
    assert doc["thresholds"]["point"]["how"] == "quantile"  # files without point labels


def test_with_views_keeps_references_of_the_same_views_and_refuses_others(
    calibration, trained_run
):
    from align3d_ad import Detector
    from align3d_ad.errors import ConfigError
    from align3d_ad.render import get_view_preset

    det = Detector.from_checkpoint(trained_run, device="cpu", calibration=calibration)
    same = det.with_views(get_view_preset("mvtec3d"))
    assert same.references is det.references and same.calibration is det.calibration
    assert same.encoder is not det.encoder and same.fewshot_weight == det.fewshot_weight
    with pytest.raises(ConfigError, match="rendered with views mvtec3d, got real3d"):
        det.with_views(get_view_preset("real3d"))
    zero = det.with_references(None).with_views(get_view_preset("real3d"))  # zero-shot: free
    assert zero.references is None and zero.encoder.preset.name == "real3d"


def test_reference_postprocess_checkpoint_calibrates_with_native_scores_and_says_so(
    capsys, caplog, monkeypatch, calibration, trained_run, synth_mvtec, tmp_path
):
    run = tmp_path / "ref_run"
    shutil.copytree(trained_run, run)
    doc = json.loads((run / "checkpoint.json").read_text())
    doc["config"]["method"]["postprocess"] = "reference"
    (run / "checkpoint.json").write_text(json.dumps(doc))
    normals = synth_mvtec / "cookie" / "train" / "good" / "xyz"
    code, _, err = _run(capsys, "calibrate", "--checkpoint", run, "--normals", normals,
                        "--out", tmp_path / "cal", "--false-alarm-rate", "0.34",
                        quiet=False)  # fmt: skip
    assert code == 0 and err.count("method.postprocess: reference") == 1  # a warning, once
    ours = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    native = json.loads((calibration / "calibration.json").read_text())
    assert ours["postprocess"] == native["postprocess"] == "native"
    assert any("native post-processing" in w for w in ours["warnings"])
    assert ours["thresholds"] == native["thresholds"]  # the same native scores
    cloud = synth_mvtec / "cookie" / "test" / "good" / "xyz" / "000.tiff"
    code, _, err = _run(capsys, "predict", "--checkpoint", run, "--calibration", tmp_path / "cal",
                        cloud, "--out", tmp_path / "pred", "--no-report", quiet=False)  # fmt: skip
    assert code == 0 and "native post-processing" in err
    # the notebook API says it too when references are attached by hand
    from align3d_ad import Detector

    det = Detector.from_checkpoint(run, device="cpu")
    caplog.set_level(logging.WARNING, logger="align3d_ad")
    caplog.clear()
    det.with_references(None)
    quiet = det.with_references(det.with_references(None).references, warn=False)
    assert quiet.references is None and not caplog.records
    bank = Detector.from_checkpoint(trained_run, device="cpu", calibration=calibration).references
    few = det.with_references(bank)
    assert few.references is bank
    assert [r.getMessage()[:56] for r in caplog.records] == [
        "this detector has method.postprocess: reference, which h"]
    caplog.clear()
    det.with_references(bank, warn=False)
    assert not caplog.records
    Detector.from_checkpoint(run, device="cpu", calibration=tmp_path / "cal")
    assert len(caplog.records) == 1  # loading the calibration says it...
    caplog.clear()
    monkeypatch.setattr("align3d_ad.distributed.is_main", lambda: False)
    Detector.from_checkpoint(run, device="cpu", calibration=tmp_path / "cal")
    assert not caplog.records  # ...on rank 0 only under torchrun


def test_unreadable_calibration_documents_are_named(tmp_path):
    from align3d_ad.errors import ConfigError
    from align3d_ad.model.calibration import read_calibration

    with pytest.raises(ConfigError, match=r"calibration .* must be a folder written by "
                       r"`align3d-ad calibrate`, got no calibration.json there"):  # fmt: skip
        read_calibration(tmp_path)
    for text, problem in (("{nope", "not valid JSON"), ("[1]", "must hold a JSON object, got list")):
        (tmp_path / "calibration.json").write_text(text)
        with pytest.raises(ConfigError, match=re.escape(f"calibration.json: {problem}")):
            read_calibration(tmp_path)
