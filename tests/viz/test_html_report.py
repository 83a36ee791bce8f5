"""report.html without a browser: cloud packing, gallery selection, curves and the page itself."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from align3d_ad.data import PointCloudSample
from align3d_ad.errors import ShapeError
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.viz.cloud_view import STEPS, decimate, decode_cloud, encode_cloud
from align3d_ad.viz.curves import (
    curve_figures,
    curve_set,
    histogram_figure,
    thin,
    thresholds_of,
)
from align3d_ad.viz.gallery import GalleryCollector, GalleryItem
from align3d_ad.viz.html_report import ReportHeader, render_html


def test_decimate_is_a_sorted_seeded_subset():
    rows = decimate(1000, 100, seed=3)
    assert len(rows) == 100 and len(np.unique(rows)) == 100 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, decimate(1000, 100, seed=3))
    np.testing.assert_array_equal(decimate(50, 100), np.arange(50))
    with pytest.raises(ValueError, match="cap must be at least 1"):
        decimate(10, 0)


def test_encode_cloud_round_trips_within_one_quantisation_step():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5000, 3)) * [3.0, 1.0, 0.2] + 100.0
    fused = rng.random(5000)
    fused[7] = np.nan
    gt = rng.random(5000) < 0.1
    packed = encode_cloud(pts, {"fused": fused, "aligned": -fused}, gt=gt, cap=1200, seed=1)
    assert packed["total"] == 5000 and packed["shown"] == 1200
    json.dumps(packed)  # JSON-able
    back = decode_cloud(packed)
    rows = decimate(5000, 1200, seed=1)
    extent = (pts[rows].max(0) - pts[rows].min(0)).max()
    assert np.abs(back["points"] - pts[rows]).max() <= extent / STEPS / 2 + 1e-9
    want = np.where(np.isnan(fused[rows]), np.nanmin(fused[rows]), fused[rows])
    span = np.nanmax(fused[rows]) - np.nanmin(fused[rows])
    assert np.abs(back["fused"] - want).max() <= span / STEPS / 2 + 1e-12
    np.testing.assert_array_equal(back["gt"], gt[rows])
    with pytest.raises(ShapeError, match="channel 'fused'"):
        encode_cloud(pts, {"fused": fused[:10]})


def _sample(category: str, label: int | None, n: int = 50, name: str = "") -> PointCloudSample:
    pts = np.random.default_rng(len(name)).normal(size=(n, 3))
    labels = None if label is None else (np.arange(n) < 5) & bool(label)
    return PointCloudSample(pts, point_labels=labels, label=label, category=category, sample_id=name)


def _pred(score: float, n: int = 50, fg: int = 40) -> SimpleNamespace:
    foreground = np.arange(n) < fg
    return SimpleNamespace(object_score=score, point_scores=np.linspace(0, 1, n),
                           branch_point_scores={"aligned": np.zeros(n), "rendering": np.ones(n)},
                           foreground=foreground)  # fmt: skip


def test_gallery_keeps_best_detections_worst_misses_and_false_alarms():
    collect = GalleryCollector(per_kind=2)
    for name, label, score in [("a", 1, 0.5), ("b", 1, 0.9), ("c", 1, 0.1), ("d", 1, 0.7),
                               ("e", 0, 0.8), ("f", 0, 0.2), ("g", 0, float("nan"))]:  # fmt: skip
        collect(_sample("cat", label, name=name), _pred(score))
    collect(_sample("dog", 1, name="z"), _pred(0.3))
    items = collect.items()
    got = [(it.category, it.kind, it.name) for it in items]
    assert got == [("cat", "best detection", "b"), ("cat", "best detection", "d"),
                   ("cat", "worst miss", "c"), ("cat", "worst miss", "a"),
                   ("cat", "false alarm", "e"), ("cat", "false alarm", "f"),
                   ("dog", "best detection", "z")]  # fmt: skip  (z, a worst miss too, shown once)
    cloud = items[0].cloud
    assert cloud["total"] == 40 and set(cloud["channels"]) == {"fused", "aligned", "rendering"}
    np.testing.assert_allclose(decode_cloud(cloud)["fused"], np.linspace(0, 1, 50)[:40], atol=1e-4)


def test_gallery_of_unlabelled_clouds_keeps_highest_and_lowest():
    collect = GalleryCollector(per_kind=1)
    for i, score in enumerate([0.3, 0.9, 0.1, 0.5]):
        collect(_sample("", None, name=f"c{i}"), _pred(score))
    assert [(it.kind, it.name, it.label) for it in collect.items()] == [
        ("highest score", "c1", None), ("lowest score", "c2", None)]
    assert collect.items()[0].cloud["gt"] is None


def _category() -> CategoryScores:
    rng = np.random.default_rng(0)
    labels = [0, 0, 1, 1, 1]
    scores = CategoryScores("cookie", sample_ids=[f"s{i}" for i in range(5)], labels=labels,
                            object_scores=[0.1, 0.4, 0.35, 0.8, 0.9])  # fmt: skip
    for lab in labels:
        y = rng.random(300) < (0.1 if lab else 0.0)
        scores.point_labels.append(y)
        scores.point_scores.append((rng.random(300) + y).astype(np.float32))
    return scores


def test_curves_match_scikit_learn_and_histograms_are_fractions():
    cs = curve_set(_category())
    figures = dict(curve_figures([cs]))
    roc = figures["ROC: samples"]["data"][0]
    fpr, tpr, _ = roc_curve([0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.9])
    np.testing.assert_allclose(roc["x"], fpr, atol=1e-5)
    np.testing.assert_allclose(roc["y"], tpr, atol=1e-5)
    curve, chance, legend = figures["Precision-recall: points (foreground)"]["data"]
    assert curve["name"] == "cookie" and chance["legendgroup"] == "cookie"
    share = np.concatenate(_category().point_labels).mean()  # the anomalous share of the points
    assert chance["y"] == [pytest.approx(share, abs=1e-5)] * 2 and chance["x"] == [0, 1]
    assert chance["line"]["color"] == curve["line"]["color"] and legend["name"] == "chance"
    assert "(60.0% anomalous)" in figures["Precision-recall: samples"]["data"][1]["name"]
    hist = histogram_figure(cs, "point", threshold=0.75)
    for trace in hist["data"]:
        assert sum(trace["y"]) == pytest.approx(1.0, abs=1e-4)
    assert hist["layout"]["shapes"][0]["x0"] == 0.75
    assert histogram_figure(cs, "object")["layout"]["shapes"] == []
    scores = _category()
    scores.object_scores[0] = float("nan")  # an undefined score is left out, not an error
    nan_roc = dict(curve_figures([curve_set(scores)]))["ROC: samples"]["data"][0]
    fpr, tpr, _ = roc_curve([0, 1, 1, 1], [0.4, 0.35, 0.8, 0.9])
    np.testing.assert_allclose(nan_roc["x"], fpr, atol=1e-5)
    x, y = thin(np.linspace(0, 1, 1000), np.linspace(0, 1, 1000), most=50)
    assert len(x) == 50 and x[0] == 0 and x[-1] == 1


def test_thresholds_hook_reads_the_documented_key():
    doc = {"thresholds": {"cookie": {"object": 0.6, "point": None, "other": 3},
                          "dowel": {"object": float("nan")}}}  # fmt: skip
    assert thresholds_of(doc, "cookie") == {"object": 0.6} and thresholds_of(doc, "dowel") == {}
    assert thresholds_of(doc, "tire") == {} and thresholds_of({}, "cookie") == {}
    # sub-runs (test --shots draws) have keys of their own; "*" serves every category (predict)
    doc["thresholds"]["shots4/draw1/cookie"] = {"object": 0.2, "point": 0.3}
    assert thresholds_of(doc, "cookie", "shots4/draw1") == {"object": 0.2, "point": 0.3}
    assert thresholds_of(doc, "cookie", ".") == {"object": 0.6}
    assert thresholds_of(doc, "cookie", "shots4/draw0") == {}
    assert thresholds_of({"thresholds": {"*": {"point": 0.5}}}, "") == {"point": 0.5}


def test_report_draws_each_runs_own_threshold(tmp_path):
    from align3d_ad.viz.curves import load_curve_sets

    _category().save(tmp_path / "scores" / "cookie.npz")  # zero-shot: no threshold
    _category().save(tmp_path / "shots2" / "draw0" / "scores" / "cookie.npz")
    sets = load_curve_sets(tmp_path)
    assert sorted(cs.run for cs in sets) == [".", "shots2/draw0"]
    doc = {"thresholds": {"shots2/draw0/cookie": {"object": 0.625, "point": 0.875}}}
    page = render_html(ReportHeader("t", "1"), doc=doc, curve_sets=sets)
    assert "cookie (shots2/draw0): object scores; threshold 0.625 dashed" in page
    assert "cookie (shots2/draw0): point scores; threshold 0.875 dashed" in page
    assert "cookie (.): object scores\"" in page  # the zero-shot histogram: none


def _doc() -> dict:
    cat = {"object": {"o_auroc": 0.5, "o_ap": 0.25}, "foreground": {"p_auroc": 0.612, "aupro": 0.3},
           "grid": {"p_auroc": 0.777, "aupro": float("nan")},
           "few_shot": {"k": 4, "f1": 0.5}}  # fmt: skip
    return {"setting": "mvtec3d_one_vs_rest", "backbone": "tiny", "random_weights": True,
            "categories": {"cookie": cat}, "mean": cat, "thresholds": {"cookie": {"point": 0.75}}}


def test_page_is_self_contained_and_carries_tables_curves_and_clouds():
    pts = np.random.default_rng(0).normal(size=(300, 3))
    item = GalleryItem("cookie/test/crack/000", "cookie", "best detection", 1, 0.9,
                       encode_cloud(pts, {"fused": pts[:, 0]}), views_png=b"\x89PNG fake")  # fmt: skip
    header = ReportHeader("a title", "9.9", backbone="tiny", fingerprint="params-sha256:ab",
                          random_weights=True, facts=[("seed", "3")], run_seconds=75)  # fmt: skip
    page = render_html(header, doc=_doc(), curve_sets=[curve_set(_category())], gallery=[item])
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|<img[^>]*src=\"(?!data:)", page)
    assert page.count("<script") == 4  # plotly.js, figures, clouds, the report's own code
    assert "Random backbone weights" in page and "params-sha256:ab" in page and "75 s" in page
    # both point variants, the published row (x100) and the further-metrics hook
    for text in ("points only", "published protocol", "61.2", "77.7", "83.0", "Align3D-AD (paper)",
                 "<h3>few_shot</h3>", "<td>4</td>", "threshold 0.75"):  # fmt: skip
        assert text in page, text
    clouds = json.loads(re.search(r'id="a3d-clouds">(.*?)</script>', page).group(1))
    assert clouds[0]["threshold"] == 0.75 and clouds[0]["cloud"]["total"] == 300
    np.testing.assert_allclose(decode_cloud(clouds[0]["cloud"])["fused"], pts[:, 0], atol=1e-4)
    figures = json.loads(re.search(r'id="a3d-figures">(.*?)</script>', page).group(1))
    assert len(figures) == 6 and page.count('class="plot"') == 6  # 4 curves + 2 histograms
    quiet = render_html(ReportHeader("t", "1", random_weights=False), doc=_doc())
    assert "Random backbone weights" not in quiet and "Gallery" not in quiet


def test_view_grid_renders_the_sample_as_the_detector_would():
    import io

    from PIL import Image

    from align3d_ad.config import DataConfig
    from align3d_ad.render import RenderSettings, get_view_preset
    from align3d_ad.viz.gallery import ViewGrid

    u, v = np.meshgrid(np.linspace(-1, 1, 30), np.linspace(-1, 1, 30))
    xyz = np.stack([u, v, 1.0 - 0.2 * np.exp(-(u**2 + v**2))], -1).astype(np.float32)
    sample = PointCloudSample.from_grid(xyz, mask=(u > 0.5) & (v > 0.5), sample_id="t", label=1)
    grid = ViewGrid(get_view_preset("mvtec3d"), RenderSettings(image_size=32),
                    DataConfig(remove_background=False, keep_largest_cluster=False))  # fmt: skip
    collect = GalleryCollector(views=grid)
    collect(sample, SimpleNamespace(object_score=1.0, point_scores=u.ravel(), foreground=None))
    (item,) = collect.items()
    with Image.open(io.BytesIO(item.views_png)) as image:
        assert image.size == (3 * 32 + 2 * 2, 3 * (32 + 14) + 2 * 2)  # viz.grid's exact layout
    assert item.organised and item.cloud["total"] == 900
