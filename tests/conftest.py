"""Shared test setup: offline, deterministic, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):  # noqa: D103
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------ shared pipeline fixtures
@pytest.fixture(scope="session")
def synth_mvtec(tmp_path_factory):
    """A small synthetic MVTec3D-AD-format dataset (3 categories), written once per session."""
    from align3d_ad.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "mvtec"
    generate_dataset(root, format="mvtec3d", categories=["bagel", "cookie", "dowel"], small=True)
    return root


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feature_cache")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synth_mvtec, feature_cache):
    """A run folder trained (fast schedule, tiny backbone) on bagel."""
    from align3d_ad.training import train_model
    from pipeline_helpers import demo_config

    run_dir = tmp_path_factory.mktemp("run") / "bagel"
    run_dir.mkdir()
    train_model(demo_config(synth_mvtec, feature_cache), run_dir)
    return run_dir
