"""The notebook API at the top of the package (README, "Python API")."""

from __future__ import annotations

import numpy as np

import align3d_ad as a3d


def test_readme_notebook_path_scores_a_file_like_the_module_path(trained_run, synth_mvtec):
    from align3d_ad.model.detector import load_detector

    path = next(iter(sorted((synth_mvtec / "cookie" / "test").rglob("xyz/*.tiff"))))
    sample = a3d.load_point_cloud(path)
    assert isinstance(sample, a3d.PointCloudSample)
    detector = a3d.Detector.from_checkpoint(trained_run, device="cpu", use_cache=False)
    prediction = detector.predict(sample)
    assert isinstance(prediction, a3d.Prediction)
    assert prediction.point_scores.shape == (sample.num_points,)
    again = load_detector(trained_run, device="cpu", use_cache=False).predict(sample)
    np.testing.assert_array_equal(prediction.point_scores, again.point_scores)
    assert prediction.object_score == again.object_score


def test_train_writes_a_run_folder_it_creates(tmp_path, synth_mvtec, feature_cache):
    from pipeline_helpers import demo_config

    config = demo_config(synth_mvtec, feature_cache, "train.stage1_epochs=0",
                         "train.stage2_epochs=1", "train.stage2_dpca_epochs=0")  # fmt: skip
    result = a3d.train(config, tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run" / "head.safetensors").is_file()
    assert result.run_dir == tmp_path / "new" / "run"


def test_readers_and_generator_are_exported(tmp_path):
    root = tmp_path / "synth"
    a3d.generate_dataset(root, format="mvtec3d", categories=["bagel"], small=True)
    reader = a3d.get_dataset("mvtec3d", root)
    assert "bagel" in reader.categories()
    assert issubclass(a3d.DatasetFormatError, a3d.Align3DError)
    assert a3d.load_config(None, ["seed=3"]).seed == 3
