"""``evaluate_dataset`` with loader workers and batches of several samples (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.config import EvalConfig
from align3d_ad.evaluate.runner import evaluate_dataset
from align3d_ad.evaluate.scores import CategoryScores
from align3d_ad.model.detector import load_detector


def _run(trained_run, synth_mvtec, out, **eval_opts):
    detector = load_detector(trained_run, device="cpu", use_cache=False)
    seen = []
    metrics = evaluate_dataset(
        detector, "mvtec3d", synth_mvtec, out_dir=out, categories=["cookie"],
        eval_config=EvalConfig(**eval_opts), on_prediction=lambda s, p: seen.append(s.sample_id),
    )  # fmt: skip
    return metrics, CategoryScores.load(out / "scores" / "cookie.npz"), seen


def test_workers_change_where_samples_are_read_not_the_scores(trained_run, synth_mvtec, tmp_path):
    m0, s0, seen0 = _run(trained_run, synth_mvtec, tmp_path / "w0", workers=0, batch_size=2)
    m1, s1, seen1 = _run(trained_run, synth_mvtec, tmp_path / "w1", workers=1, batch_size=2)
    assert seen0 == seen1 == s0.sample_ids == s1.sample_ids  # every sample once, in order
    assert m0 == m1
    for a, b in zip(s0.point_scores, s1.point_scores):
        np.testing.assert_array_equal(a, b)  # bitwise
    assert s0.object_scores == s1.object_scores


def test_batch_size_leaves_the_metrics_alone(trained_run, synth_mvtec, tmp_path):
    m1, s1, _ = _run(trained_run, synth_mvtec, tmp_path / "b1", workers=0, batch_size=1)
    m5, s5, _ = _run(trained_run, synth_mvtec, tmp_path / "b5", workers=0, batch_size=5)
    # one backbone run over all views of a batch: float rounding may differ in the last bits
    for a, b in zip(s1.point_scores, s5.point_scores):
        np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose(s1.object_scores, s5.object_scores, atol=2e-3)
    for variant in ("object", "foreground"):
        for name, value in m1["cookie"][variant].items():
            assert value == pytest.approx(m5["cookie"][variant][name], abs=0.02)


def test_negative_workers_is_a_one_line_config_error(trained_run, synth_mvtec, tmp_path, capsys):
    code = main(["test", "--checkpoint", str(trained_run), "--dataset", "mvtec3d", "--root",
                 str(synth_mvtec), "--categories", "cookie", "--out", str(tmp_path / "t"),
                 "--workers", "-1", "--device", "cpu", "--no-report"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USER_ERROR
    assert err[-1].endswith("eval.workers must be >= 0, got -1")


def test_one_loader_serves_every_category_in_order(
    trained_run, synth_mvtec, tmp_path, monkeypatch
):
    # the next category's first batch is read while this one finishes (no idle start per category)
    import align3d_ad.data.loading as loading

    started = []
    real = loading.DataLoader
    monkeypatch.setattr(loading, "DataLoader", lambda *a, **k: started.append(1) or real(*a, **k))
    detector = load_detector(trained_run, device="cpu", use_cache=False)
    out = {}
    for workers in (0, 1):
        seen: list[str] = []
        metrics = evaluate_dataset(
            detector, "mvtec3d", synth_mvtec, out_dir=tmp_path / f"w{workers}",
            categories=["bagel", "dowel"], select=lambda refs: refs[:3],
            eval_config=EvalConfig(workers=workers, batch_size=2),
            on_prediction=lambda s, p, seen=seen: seen.append(s.category + "/" + s.sample_id),
        )  # fmt: skip
        saved = {c: CategoryScores.load(tmp_path / f"w{workers}" / "scores" / f"{c}.npz")
                 for c in ("bagel", "dowel")}  # fmt: skip
        out[workers] = metrics, saved, seen
    assert started == [1]  # workers=1: one DataLoader for both categories
    (m0, s0, seen0), (m1, s1, seen1) = out[0], out[1]
    assert seen0 == seen1 and [s.split("/")[0] for s in seen1] == ["bagel"] * 3 + ["dowel"] * 3
    assert json.dumps(m0, sort_keys=True) == json.dumps(m1, sort_keys=True)  # NaN == NaN here
    for category in ("bagel", "dowel"):
        assert s1[category].sample_ids == s0[category].sample_ids
        assert [f"{category}/{i}" for i in s1[category].sample_ids] == [
            s for s in seen1 if s.startswith(category)]
        for a, b in zip(s0[category].point_scores, s1[category].point_scores):
            np.testing.assert_array_equal(a, b)
