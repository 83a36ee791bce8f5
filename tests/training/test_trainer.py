"""Training end to end on synthetic data with the tiny random backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from align3d_ad.data import get_dataset, prepare_sample
from align3d_ad.errors import CheckpointMismatchError, ConfigError
from align3d_ad.evaluate import point_auroc
from align3d_ad.model.checkpoint import HEAD_FILE, read_checkpoint
from align3d_ad.model.detector import Detector, load_detector
from align3d_ad.training import stages as stages_module
from align3d_ad.training import train_model
from pipeline_helpers import demo_config, stops_at_call


def _heads_equal(a, b) -> bool:
    sa, sb = load_file(str(a / HEAD_FILE)), load_file(str(b / HEAD_FILE))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_model_writes_a_loadable_checkpoint(trained_run):
    doc = read_checkpoint(trained_run)
    assert doc["backbone"]["name"] == "tiny-clip" and doc["backbone"]["random_weights"]
    assert doc["progress"] == {"stage": 3, "epoch": 0}
    assert doc["training_data"]["categories"] == ["bagel"]
    keys = load_file(str(trained_run / HEAD_FILE)).keys()
    assert any(k.startswith("aligner.") for k in keys)
    assert {k.split(".")[1] for k in keys if k.startswith("learners.")} == {"aligned", "rendering"}


def test_detector_scores_every_input_point(trained_run, synth_mvtec):
    detector = Detector.from_checkpoint(trained_run, device="cpu")
    reader = get_dataset("mvtec3d", synth_mvtec)
    sample = reader.load(reader.refs("cookie", "test")[-1])
    pred = detector.predict(sample)
    assert pred.point_scores.shape == (sample.num_points,)
    assert np.isfinite(pred.point_scores).all() and np.isfinite(pred.object_score)
    assert pred.grid_scores.shape == sample.grid_shape
    # background removed by preprocessing scores exactly 0, the object points do not
    assert 0 < pred.foreground.sum() < sample.num_points
    assert (pred.point_scores[~pred.foreground] == 0).all()
    assert (pred.point_scores[pred.foreground] > 0).all()
    # the object score: max of the fused point map plus the fused global probability
    glob = np.mean(list(pred.branch_global.values()))
    assert pred.object_score == pytest.approx(pred.point_scores.max() + glob, rel=1e-5)
    # plain arrays work too, and batches give the same answer as single clouds
    arr = detector.predict(sample.points[pred.foreground])
    assert arr.point_scores.shape == (int(pred.foreground.sum()),)
    both = detector.predict([sample, sample])
    np.testing.assert_allclose(both[1].point_scores, pred.point_scores, atol=1e-6)


def test_training_is_deterministic_and_resume_is_exact(tmp_path, synth_mvtec, feature_cache, monkeypatch):
    config = demo_config(synth_mvtec, feature_cache, "train.stage2_epochs=3")
    full, again, resumed = (tmp_path / n for n in ("full", "again", "resumed"))
    for d in (full, again, resumed):
        d.mkdir()
    first = train_model(config, full)
    second = train_model(config, again)
    assert _heads_equal(full, again)
    # the second run reads every feature from the cache instead of running the backbone
    assert second.cache_misses == 0 and second.cache_hits == first.cache_hits + first.cache_misses

    real_epoch = stages_module.stage2_epoch
    interrupted = stops_at_call(real_epoch)  # in the second stage-2 epoch
    monkeypatch.setattr("align3d_ad.training.trainer.stage2_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, resumed)
    assert read_checkpoint(resumed)["progress"] == {"stage": 2, "epoch": 1}
    assert not _heads_equal(full, resumed)
    monkeypatch.setattr("align3d_ad.training.trainer.stage2_epoch", real_epoch)
    train_model(config, resumed, resume=True)
    assert _heads_equal(full, resumed)
    # checkpoint.json keeps one record per epoch, the interrupted run's included
    history = read_checkpoint(full)["history"]
    epochs = [(1, e + 1) for e in range(config.train.stage1_epochs)] + [(2, 1), (2, 2), (2, 3)]
    assert [(h["stage"], h["epoch"]) for h in history] == epochs
    assert history == first.history and read_checkpoint(resumed)["history"] == history


def test_training_learns_to_separate_held_out_points(tmp_path, synth_mvtec, feature_cache):
    """Loss goes down; on held-out bagel samples anomalous points score higher than normal ones."""
    config = demo_config(
        synth_mvtec, feature_cache, "train.stage1_epochs=2", "train.stage2_epochs=12",
        "train.stage2_dpca_epochs=3", "train.stage2_batch_size=2",
    )  # fmt: skip
    reader = get_dataset("mvtec3d", synth_mvtec)
    refs = reader.refs("bagel", "test") + reader.refs("bagel", "validation")
    samples = [prepare_sample(reader.load(r), config.data) for r in refs]
    held_out = [s for i, s in enumerate(samples) if i % 3 == 2 and s.sample.label == 1]
    train = [s for i, s in enumerate(samples) if i % 3 != 2]
    result = train_model(config, tmp_path, samples=train)
    stage2 = [h for h in result.history if h["stage"] == 2]
    assert stage2[-1]["loss_rendering"] < stage2[0]["loss_rendering"]
    assert stage2[-1]["loss_aligned"] < stage2[0]["loss_aligned"]
    detector = Detector.from_checkpoint(tmp_path, device="cpu", cache_dir=feature_cache)
    preds = detector.predict_prepared(held_out)
    labels = [p.original.point_labels for p in held_out]
    auroc = point_auroc(labels, [p.point_scores for p in preds])
    assert auroc > 0.65


@pytest.mark.parametrize(
    ("overrides", "aligner", "learners"),
    [
        (["method.variant=pointad"], False, {"rendering"}),
        (["method.branches=aligned"], True, {"aligned"}),
        (["method.branches=rendering"], False, {"rendering"}),
        (["method.variant=clip-zero-shot"], False, set()),
        (["method.use_scr=false", "method.use_dpca=false"], True, {"aligned", "rendering"}),
    ],
)
def test_variants_and_ablations_train_the_right_parts(
    tmp_path, synth_mvtec, feature_cache, overrides, aligner, learners
):
    config = demo_config(synth_mvtec, feature_cache, "train.stage1_epochs=1",
                         "train.stage2_epochs=1", *overrides)  # fmt: skip
    result = train_model(config, tmp_path)
    keys = load_file(str(tmp_path / HEAD_FILE)).keys()
    assert any(k.startswith("aligner.") for k in keys) == aligner
    assert {k.split(".")[1] for k in keys if k.startswith("learners.")} == learners
    stage1 = [h for h in result.history if h["stage"] == 1]
    assert bool(stage1) == aligner
    if "method.use_scr=false" in overrides:
        assert all(h["scr"] == 0.0 for h in stage1)
        assert all(h["dpca"] == 0.0 for h in result.history if h["stage"] == 2)
    detector = Detector.from_checkpoint(tmp_path, device="cpu", cache_dir=feature_cache)
    reader = get_dataset("mvtec3d", synth_mvtec)
    pred = detector.predict(reader.load(reader.refs("dowel", "test")[0]))
    assert set(pred.branch_global) == (learners or {"rendering"})


def test_checkpoint_refuses_another_backbone(trained_run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    doc = json.loads((other / "checkpoint.json").read_text())
    doc["backbone"]["fingerprint"] = "sha256-headtail:0000"
    (other / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointMismatchError, match="trained with backbone"):
        load_detector(other, device="cpu")


def test_checkpoint_detects_head_from_another_epoch(trained_run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    doc = json.loads((other / "checkpoint.json").read_text())
    doc["progress"] = {"stage": 2, "epoch": 1}
    (other / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="different epochs"):
        load_detector(other, device="cpu")


def test_training_needs_colours_for_the_aligner(tmp_path, synth_mvtec, feature_cache):
    config = demo_config(synth_mvtec, feature_cache)
    reader = get_dataset("mvtec3d", synth_mvtec)
    sample = reader.load(reader.refs("bagel", "test")[1])
    sample.colors = None
    with pytest.raises(Exception, match="no colours"):
        train_model(config, tmp_path, samples=[prepare_sample(sample, config.data)])
