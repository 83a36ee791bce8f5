"""A published-row config runs in reference style end to end and says which variant is compared."""

from __future__ import annotations

import numpy as np

from align3d_ad.app.cli import main
from align3d_ad.config import load_config
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.evaluate.tables import read_results
from pipeline_helpers import FAST_TRAIN

PUBLISHED = ("mvtec3d_one_vs_rest", "eyecandies_one_vs_rest", "cross_eyecandies", "cross_real3d")


def test_published_rows_use_reference_style_and_our_defaults_stay_ours():
    for name in PUBLISHED:
        config = load_config(f"configs/{name}.yaml")
        assert config.render.style == "reference" and config.method.postprocess == "reference"
        assert config.eval.grid_size == 336
    default, demo = load_config(None), load_config("configs/demo.yaml")
    for config in (default, demo):
        assert config.render.style == "ours" and config.method.postprocess == "native"


def test_reproduce_a_published_row_prints_both_variants_and_names_the_compared_one(
    capsys, synth_mvtec, feature_cache, tmp_path
):
    sets = [x for item in FAST_TRAIN for x in ("--set", item)]
    argv = [
        "reproduce", "--config", "configs/mvtec3d_one_vs_rest.yaml", "--root", synth_mvtec,
        "--out", tmp_path / "r", "--cache-dir", feature_cache, "--device", "cpu",
        "--set", "backbone.model_name=tiny-clip", "--set", "backbone.pretrained=null",
        "--set", "protocol.auxiliaries=[bagel]", "--set", "eval.categories=[bagel, cookie]",
        "--set", "data.plane_cut_distance=0.001", "--set", "data.plane_fit_threshold=0.0005",
        "--set", "data.limit_per_split=2", "--set", "eval.grid_size=112", *sets,
    ]  # fmt: skip
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = read_results(tmp_path / "r" / "metrics.json")
    assert set(doc["categories"]) == {"cookie"}  # the auxiliary is left out of its own run
    lines = out.splitlines()
    points = next(line for line in lines if line.startswith("  points only"))
    reference = next(line for line in lines if line.startswith("  reference style (as published)"))
    assert points.split()[-2:] != reference.split()[-2:]
    md = (tmp_path / "r" / "metrics.md").read_text()
    assert "## Beside the published numbers (this run: `reference` variant" in md
    assert "The `this run` row uses the `reference` point metrics" in md
    ours = doc["mean"]["reference"]
    assert f"| this run | {100 * doc['mean']['object']['o_auroc']:.1f} |" in md
    assert f"| {100 * ours['p_auroc']:.1f} | {100 * ours['aupro']:.1f} |" in md
    # the reference maps were kept: the blurred 112 x 112 grid, background cells non-zero
    scores = CategoryScores.load(tmp_path / "r" / "bagel" / "mvtec3d" / "scores" / "cookie.npz")
    grid = np.stack(scores.reference_scores)
    assert grid.shape[1:] == (112, 112) and (grid > 0).mean() > (np.stack(scores.grid_scores) > 0).mean()
    assert scores.metrics()["reference"] == doc["categories"]["cookie"]["reference"]
