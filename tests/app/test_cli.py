"""Every command end to end on tiny synthetic data with the tiny backbone, and its user errors."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.data import load_point_cloud, read_ply
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.evaluate.tables import read_results
from pipeline_helpers import FAST_TRAIN


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _train(capsys, root: Path, cache: Path, out: Path, *extra: str) -> Path:
    sets = [x for item in FAST_TRAIN for x in ("--set", item)]
    code, out_text, err = run(
        capsys, "train", "--config", "configs/demo.yaml", "--root", root, "--out", out,
        "--cache-dir", cache, "--device", "cpu", "--quiet",
        "--set", "data.train_categories=[bagel]", *sets, *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, synth_mvtec, feature_cache):
    """A run folder made by `align3d-ad train`."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--config", "configs/demo.yaml", "--root", str(synth_mvtec),
                 "--out", str(out), "--cache-dir", str(feature_cache), "--device", "cpu",
                 "--quiet", "--set", "data.train_categories=[bagel]",
                 *[x for item in FAST_TRAIN for x in ("--set", item)]]) == 0  # fmt: skip
    return out


@pytest.mark.parametrize("fmt", ["mvtec3d", "eyecandies", "real3d"])
def test_synth_then_inspect_reports_what_was_written(capsys, tmp_path, fmt):
    root = tmp_path / fmt
    code, out, _ = run(capsys, "synth", "--out", root, "--format", fmt, "--small",
                       "--categories", "cookie", "tire", "--seed", "3")  # fmt: skip
    assert code == 0 and "wrote" in out
    code, out, _ = run(capsys, "inspect", "--dataset", fmt, "--root", root, "--json")
    assert code == 0
    report = json.loads(out)
    manifest = json.loads((root / "synth_manifest.json").read_text())
    assert report["problems"] == [] and report["skipped"] == 0
    assert set(report["categories"]) == set(manifest["categories"])
    for cat, splits in manifest["categories"].items():
        assert set(report["categories"][cat]) == set(splits)
        for split, counts in splits.items():
            got = report["categories"][cat][split]
            for key in ("samples", "normal", "anomalous", "defect_types", "anomalous_points"):
                assert got[key] == counts[key], (cat, split, key)


def test_inspect_text_table_and_missing_root(capsys, synth_mvtec, tmp_path):
    code, out, _ = run(capsys, "inspect", "--dataset", "mvtec3d", "--root", synth_mvtec)
    assert code == 0 and "bagel" in out and "test" in out
    code, _, err = run(capsys, "inspect", "--dataset", "mvtec3d", "--root", tmp_path / "nope")
    assert code == EXIT_USER_ERROR
    assert "nope" in err and len(err.strip().splitlines()) == 1


def test_unknown_dataset_is_one_line_error(capsys, synth_mvtec):
    code, _, err = run(capsys, "inspect", "--dataset", "mvtec4d", "--root", synth_mvtec)
    assert code == EXIT_USER_ERROR and "mvtec3d" in err and len(err.strip().splitlines()) == 1


def test_render_file_and_dataset_sample(capsys, synth_mvtec, tmp_path):
    code, out, _ = run(capsys, "render", "--dataset", "mvtec3d", "--root", synth_mvtec,
                       "--sample", "bagel/test/crack/000", "--out", tmp_path / "a", "--size", "96")  # fmt: skip
    assert code == 0 and "visible in >= 1 view" in out
    assert (tmp_path / "a" / "views.png").is_file() and (tmp_path / "a" / "views_color.png").is_file()
    xyz = next((synth_mvtec / "cookie" / "test" / "good" / "xyz").glob("*.tiff"))
    code, out, _ = run(capsys, "render", xyz, "--out", tmp_path / "b", "--size", "64")
    assert code == 0 and (tmp_path / "b" / "views.png").is_file()
    code, _, err = run(capsys, "render", "--dataset", "mvtec3d", "--root", synth_mvtec,
                       "--sample", "bagel/test/crack/999", "--out", tmp_path / "c")  # fmt: skip
    assert code == EXIT_USER_ERROR and "999" in err


def test_train_writes_run_folder_and_never_overwrites(capsys, cli_run, synth_mvtec, feature_cache):
    assert {"config.yaml", "run.json", "run.log", "checkpoint.json", "head.safetensors"} <= {
        p.name for p in cli_run.iterdir()
    }
    info = json.loads((cli_run / "run.json").read_text())
    assert info["seed"] == 0 and "torch" in info["versions"] and "train" in info["command"]
    again = _train(capsys, synth_mvtec, feature_cache, cli_run, "--set", "train.stage2_epochs=1")
    assert (again.parent / f"{again.name}-2" / "checkpoint.json").is_file()


def test_test_metrics_agree_with_saved_scores(capsys, cli_run, synth_mvtec, tmp_path):
    code, out, _ = run(capsys, "test", "--checkpoint", cli_run, "--dataset", "mvtec3d", "--root",
                       synth_mvtec, "--categories", "cookie", "dowel", "--out", tmp_path / "t",
                       "--device", "cpu")  # fmt: skip
    assert code == 0 and "O-AUROC" in out
    doc = read_results(tmp_path / "t" / "metrics.json")
    assert set(doc["categories"]) == {"cookie", "dowel"}
    for cat in ("cookie", "dowel"):
        saved = CategoryScores.load(tmp_path / "t" / "scores" / f"{cat}.npz")
        recomputed = saved.metrics()
        for variant in ("object", "foreground", "grid"):
            for metric, value in recomputed[variant].items():
                assert value == pytest.approx(doc["categories"][cat][variant][metric], abs=1e-12)
    rows = list(csv.DictReader((tmp_path / "t" / "metrics.csv").open()))
    mean_auroc = [r for r in rows if r["run"] == "mean" and r["category"] == "mean"
                  and r["variant"] == "object" and r["metric"] == "o_auroc"]  # fmt: skip
    assert float(mean_auroc[0]["value"]) == pytest.approx(doc["mean"]["object"]["o_auroc"], abs=1e-6)
    md = (tmp_path / "t" / "metrics.md").read_text()
    assert f"{100 * doc['categories']['cookie']['object']['o_auroc']:.1f}" in md
    # report.html: printed, linked from metrics.md, a gallery entry per category and kind found
    html = (tmp_path / "t" / "report.html").read_text()
    assert f"html:       {tmp_path / 't' / 'report.html'}" in out and "[report.html]" in md
    assert f"{100 * doc['categories']['dowel']['foreground']['p_auroc']:.1f}" in html
    assert {"cookie", "dowel"} <= set(re.findall(r'<option value="\d+">(\w+) / ', html))


def test_test_unknown_category_and_missing_checkpoint(capsys, cli_run, synth_mvtec, tmp_path):
    code, _, err = run(capsys, "test", "--checkpoint", cli_run, "--dataset", "mvtec3d", "--root",
                       synth_mvtec, "--categories", "carrot", "--out", tmp_path / "t")  # fmt: skip
    assert code == EXIT_USER_ERROR and "carrot" in err and "cookie" in err
    code, _, err = run(capsys, "test", "--checkpoint", tmp_path / "none", "--dataset", "mvtec3d",
                       "--root", synth_mvtec, "--out", tmp_path / "u")  # fmt: skip
    assert code == EXIT_USER_ERROR and "checkpoint" in err


def test_predict_files_and_folders(capsys, cli_run, synth_mvtec, tmp_path):
    folder = synth_mvtec / "dowel" / "test" / "good" / "xyz"
    single = next((synth_mvtec / "cookie" / "test" / "crack" / "xyz").glob("*.tiff"))
    code, out, _ = run(capsys, "predict", "--checkpoint", cli_run, folder, single,
                       "--out", tmp_path / "p", "--device", "cpu", "--quiet")  # fmt: skip
    assert code == 0
    files = sorted(folder.glob("*.tiff")) + [single]
    rows = list(csv.DictReader((tmp_path / "p" / "object_scores.csv").open()))
    assert [r["file"] for r in rows] == [str(f) for f in files]
    for row, path in zip(rows, files):
        scores = np.load(tmp_path / "p" / f"{row['name']}.npy")  # the TIFF's grid, NaN off points
        sample = load_point_cloud(path)
        assert scores.shape == sample.grid_shape and int(row["points"]) == sample.num_points
        ply = read_ply(tmp_path / "p" / f"{row['name']}.ply")
        np.testing.assert_allclose(ply["anomaly_score"], scores[~np.isnan(scores)], rtol=1e-6)
        assert math.isfinite(float(row["object_score"]))
    html = (tmp_path / "p" / "report.html").read_text()  # the highest scored cloud leads the gallery
    best = max(rows, key=lambda r: float(r["object_score"]))
    assert re.search(r'<option value="0">[^<]*' + re.escape(best["file"]) + r" \(highest score\)", html)
    code, out, _ = run(capsys, "predict", "--checkpoint", cli_run, single, "--out", tmp_path / "q",
                       "--device", "cpu", "--no-report")  # fmt: skip
    assert code == 0 and not (tmp_path / "q" / "report.html").exists() and "html:" not in out


def test_predict_bad_input(capsys, cli_run, tmp_path):
    bad = tmp_path / "cloud.xyz"
    bad.write_text("1 2\n3 4 5 6 7 8 9\n")
    code, _, err = run(capsys, "predict", "--checkpoint", cli_run, bad, "--out", tmp_path / "p")
    assert code == EXIT_USER_ERROR and "cloud.xyz" in err
    code, _, err = run(capsys, "predict", "--checkpoint", cli_run, tmp_path / "missing.ply",
                       "--out", tmp_path / "q")  # fmt: skip
    assert code == EXIT_USER_ERROR and "missing.ply" in err


def test_config_errors_name_the_key(capsys, synth_mvtec, tmp_path):
    code, _, err = run(capsys, "train", "--config", "configs/demo.yaml", "--root", synth_mvtec,
                       "--out", tmp_path / "r", "--set", "train.stage2_epoch=3")  # fmt: skip
    assert code == EXIT_USER_ERROR and "train.stage2_epoch" in err and "train.stage2_epochs" in err
    code, _, err = run(capsys, "train", "--config", tmp_path / "none.yaml", "--out", tmp_path / "s")
    assert code == EXIT_USER_ERROR and "none.yaml" in err


def test_missing_weights_fail_fast_naming_the_flag(capsys, synth_mvtec, tmp_path):
    code, _, err = run(capsys, "train", "--config", "configs/mvtec3d_one_vs_rest.yaml", "--root",
                       synth_mvtec, "--out", tmp_path / "r", "--set",
                       "data.train_categories=[bagel]")  # fmt: skip
    assert code == EXIT_USER_ERROR and "--weights" in err
    code, _, err = run(capsys, "train", "--config", "configs/mvtec3d_one_vs_rest.yaml", "--root",
                       synth_mvtec, "--out", tmp_path / "s", "--weights", tmp_path / "w.pt")  # fmt: skip
    assert code == EXIT_USER_ERROR and "w.pt" in err
    # a failed run produced nothing: the next try reuses its folder instead of making r-2
    code, _, _ = run(capsys, "train", "--config", "configs/mvtec3d_one_vs_rest.yaml", "--root",
                     synth_mvtec, "--out", tmp_path / "r")  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert not (tmp_path / "r-2").exists() and {p.name for p in (tmp_path / "r").iterdir()} <= {
        "config.yaml", "run.json", "run.log"
    }


def test_checkpoint_from_other_backbone_is_refused(capsys, cli_run, synth_mvtec, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(cli_run, other)
    doc = json.loads((other / "checkpoint.json").read_text())
    doc["backbone"]["fingerprint"] = "random-init:tiny-clip:seed7"
    (other / "checkpoint.json").write_text(json.dumps(doc))
    code, _, err = run(capsys, "test", "--checkpoint", other, "--dataset", "mvtec3d", "--root",
                       synth_mvtec, "--out", tmp_path / "t")  # fmt: skip
    assert code == EXIT_USER_ERROR and "trained with backbone" in err


def test_reproduce_runs_a_row_and_prints_the_table(capsys, synth_mvtec, feature_cache, tmp_path):
    sets = [x for item in FAST_TRAIN for x in ("--set", item)]
    code, out, err = run(
        capsys, "reproduce", "--config", "configs/demo.yaml", "--root", synth_mvtec,
        "--out", tmp_path / "r", "--cache-dir", feature_cache, "--device", "cpu",
        "--set", "protocol.auxiliaries=[bagel, cookie]", "--set", "eval.categories=[dowel]", *sets,
    )  # fmt: skip
    assert code == 0, err
    doc = read_results(tmp_path / "r" / "metrics.json")
    assert set(doc["runs"]) == {"bagel", "cookie"} and set(doc["categories"]) == {"dowel"}
    mean = np.mean([doc["runs"][r]["categories"]["dowel"]["object"]["o_auroc"] for r in doc["runs"]])
    assert doc["categories"]["dowel"]["object"]["o_auroc"] == pytest.approx(mean)
    assert (tmp_path / "r" / "bagel" / "model" / "checkpoint.json").is_file()
    assert "O-AUROC" in out and "dowel" in out
    assert "dowel (bagel/mvtec3d)" in (tmp_path / "r" / "report.html").read_text()  # curves per run


def test_info_reports_weights_honestly(capsys):
    code, out, _ = run(capsys, "info", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["backbone"]["name"] == "ViT-L-14-336-quickgelu"
    assert report["weights"]["available"] in (True, False)
    assert "--weights" in report["how_to_provide_weights"]
    code, out, _ = run(capsys, "info", "--quiet")
    assert code == 0 and "weights:" in out


def test_demo_fast_writes_an_honest_report(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--out", tmp_path / "demo", "--fast", "--device", "cpu",
                         "--quiet")  # fmt: skip
    assert code == 0, err
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "tiny-clip" in report and "not comparable with published results" in report
    assert "| **mean** |" in report
    doc = read_results(tmp_path / "demo" / "metrics.json")
    assert doc["random_weights"] is True and len(doc["categories"]) == 9
    assert list((tmp_path / "demo" / "visuals").glob("*.ply"))
    assert list((tmp_path / "demo" / "visuals").glob("*/views_scores.png"))
    assert "[report.html](report.html)" in report
    assert "tiny-clip" in (tmp_path / "demo" / "report.html").read_text()
