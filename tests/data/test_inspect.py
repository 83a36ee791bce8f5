"""inspect_dataset: what each reader sees in the tiny fixtures (tests/data/conftest.py)."""

from __future__ import annotations

import json

import pytest

from align3d_ad.data.inspect import DatasetReport, inspect_dataset
from align3d_ad.errors import ConfigError

H, W = 12, 16


def test_inspect_mvtec3d_reports_exact_counts(mvtec3d_tiny):
    report = inspect_dataset("mvtec3d", mvtec3d_tiny.root)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data) == ["dataset", "root", "categories", "problems", "skipped"]
    assert (data["dataset"], data["root"]) == ("mvtec3d", str(mvtec3d_tiny.root))
    assert (data["problems"], data["skipped"]) == ([], 0)
    bagel = data["categories"]["bagel"]
    assert list(bagel) == ["train", "validation", "test"]
    assert bagel["train"] == {
        "samples": 2, "normal": 2, "anomalous": 0, "unlabelled": 0,
        "defect_types": {"good": 2}, "grid_sizes": {"12x16": 2},
        "points": {"min": 188, "max": 188, "mean": 188.0}, "anomalous_points": 0,
    }  # fmt: skip
    assert bagel["validation"]["points"] == {"min": 186, "max": 186, "mean": 186.0}
    test = bagel["test"]
    assert (test["samples"], test["normal"], test["anomalous"], test["unlabelled"]) == (4, 1, 3, 0)
    assert test["defect_types"] == {"combined": 1, "crack": 1, "good": 1, "hole": 1}
    assert test["points"] == {"min": 187, "max": 188, "mean": (3 * 188 + 187) / 4}
    assert test["anomalous_points"] == 8 + 7 + 10


def test_inspect_agrees_with_a_synth_manifest_and_ignores_it(mvtec3d_tiny):
    manifest = {"categories": {"bagel": {
        "train": {"samples": 2, "normal": 2, "anomalous": 0, "defect_types": {"good": 2}, "anomalous_points": 0},
        "validation": {"samples": 1, "normal": 1, "anomalous": 0, "defect_types": {"good": 1}, "anomalous_points": 0},
        "test": {"samples": 4, "normal": 1, "anomalous": 3, "anomalous_points": 25,
                 "defect_types": {"good": 1, "crack": 1, "hole": 1, "combined": 1}},
    }}}  # fmt: skip
    (mvtec3d_tiny.root / "synth_manifest.json").write_text(json.dumps(manifest))
    data = inspect_dataset("mvtec3d", mvtec3d_tiny.root).to_dict()
    assert data["problems"] == [] and list(data["categories"]) == ["bagel"]
    for split, want in manifest["categories"]["bagel"].items():
        got = data["categories"]["bagel"][split]
        assert {key: got[key] for key in want} == want


def test_inspect_reports_failed_samples_and_goes_on(mvtec3d_tiny):
    bad = mvtec3d_tiny.root / "bagel" / "test" / "crack" / "xyz" / "000.tiff"
    bad.write_bytes(b"broken")
    (mvtec3d_tiny.root / "bagel" / "test" / "hole" / "rgb" / "001.png").write_bytes(b"orphan")
    seen = []
    report = inspect_dataset("mvtec3d", mvtec3d_tiny.root, on_sample=seen.append)
    assert len(seen) == 7
    data = report.to_dict()
    assert data["skipped"] == 2
    paths = [p["path"] for p in data["problems"]]
    assert sorted(paths) == sorted([str(bad), str(bad.parents[2] / "hole" / "rgb" / "001.png")])
    failure = next(p["problem"] for p in data["problems"] if p["path"] == str(bad))
    assert failure.startswith("skipped: bagel/test/crack/000 failed to load")
    test = data["categories"]["bagel"]["test"]
    assert test["samples"] == 3 and test["defect_types"] == {"combined": 1, "good": 1, "hole": 1}
    text = report.to_text()
    assert "problems: 2, skipped: 2" in text and "failed to load" in text
    assert any(line.split()[:3] == ["bagel", "test", "3"] for line in text.splitlines())


def test_inspect_eyecandies_counts_unlabelled_split(eyecandies_tiny):
    report = inspect_dataset("eyecandies", eyecandies_tiny.root, image_index=4)
    cat = report.to_dict()["categories"]["CandyCane"]
    assert {s: v["samples"] for s, v in cat.items()} == {
        "train": 3,
        "val": 1,
        "test_public": 4,
        "test_private": 1,
    }
    assert cat["test_private"]["unlabelled"] == 1 and cat["test_private"]["defect_types"] == {}
    assert cat["test_public"]["defect_types"] == {"bad": 2, "good": 2}
    assert cat["test_public"]["anomalous_points"] == 6 + 6 + 9  # dents 2x3, colors 2x3, bumps 3x3
    assert cat["train"]["grid_sizes"] == {"12x16": 3}


def test_inspect_real3d_has_no_grids_and_native_point_counts(real3d_tiny):
    report = inspect_dataset("real3d", real3d_tiny.root)
    cat = report.to_dict()["categories"]["airplane"]
    assert cat["train"]["points"] == {"min": 400, "max": 400, "mean": 400.0}
    assert cat["test"]["points"] == {"min": 160, "max": 180, "mean": 170.0}
    assert cat["test"]["grid_sizes"] == {} and cat["test"]["anomalous_points"] == 24
    assert cat["test"]["defect_types"] == {"bulge": 1, "good": 1, "sink": 1}


def test_inspect_category_filter_and_unknown_category(real3d_tiny):
    report = inspect_dataset("real3d", real3d_tiny.root, categories=["airplane"])
    assert isinstance(report, DatasetReport) and list(report.categories) == ["airplane"]
    with pytest.raises(ConfigError, match="category must be one of"):
        inspect_dataset("real3d", real3d_tiny.root, categories=["car"])
