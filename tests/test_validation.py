"""Bad values on the command line (issue 12): exit status 2 and one line naming the key, up front."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.app.commands import render as render_command
from align3d_ad.config import MAX_IMAGE_SIZE

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"


def _error_line(capsys, *argv) -> str:
    """Run the command line, check it failed as a user error, return its one stderr line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == EXIT_USER_ERROR, err
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.lr=-1"], "train.lr must be > 0, got -1.0"),
        (["--seed", "-1"], "seed must lie in [0, 4294967295], got -1"),
        (["--set", "method.n_ctx=0"], "method.n_ctx must be >= 1, got 0"),
        (["--set", "method.temperature=0"], "method.temperature must be > 0, got 0.0"),
        (["--set", "train.stage2_epochs=-1"], "train.stage2_epochs must be >= 0, got -1"),
        (["--set", "train.stage1_batch_size=0"], "train.stage1_batch_size must be >= 1, got 0"),
        (["--set", "backbone.batch_size=0"], "backbone.batch_size must be >= 1, got 0"),
    ],
)
def test_train_refuses_bad_values_before_anything_runs(capsys, tmp_path, extra, message):
    out = tmp_path / "run"
    line = _error_line(capsys, "train", "--config", DEMO, "--root", tmp_path, "--out", out,
                       "--device", "cpu", *extra)  # fmt: skip
    assert line == f"align3d-ad train: error: {message}"
    assert not out.exists()  # refused before the run folder was made


@pytest.fixture
def cloud_file(tmp_path) -> Path:
    path = tmp_path / "blob.npy"
    np.save(path, np.random.default_rng(0).normal(scale=0.02, size=(300, 3)).astype(np.float32))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "100000"], f"--size must lie in [2, {MAX_IMAGE_SIZE}] pixels, got 100000"),
        (["--size", "1"], f"--size must lie in [2, {MAX_IMAGE_SIZE}] pixels, got 1"),
        (["--seed", "-1"], "--seed must lie in [0, 4294967295], got -1"),
    ],
)
def test_render_refuses_bad_options(capsys, tmp_path, cloud_file, extra, message):
    out = tmp_path / "pictures"
    line = _error_line(capsys, "render", cloud_file, "--out", out, "--device", "cpu", *extra)
    assert line == f"align3d-ad render: error: {message}"
    assert not out.exists()


def test_render_refuses_an_out_that_is_a_file(capsys, tmp_path, cloud_file):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n")
    line = _error_line(capsys, "render", cloud_file, "--out", taken, "--device", "cpu")
    assert line == (f"align3d-ad render: error: --out {taken} exists and is not a folder; "
                    "name a folder for the pictures")  # fmt: skip
    assert taken.read_text() == "keep me\n"


def test_render_refuses_a_size_the_memory_cannot_hold(capsys, monkeypatch, tmp_path, cloud_file):
    monkeypatch.setattr(render_command, "available_bytes", lambda device: 2**30)
    need = render_command.render_bytes(4000, 9, 300, colors=False)
    assert need > 2**30
    out = tmp_path / "pictures"
    line = _error_line(capsys, "render", cloud_file, "--out", out, "--size", "4000", "--device", "cpu")
    assert line == (f"align3d-ad render: error: --size 4000 needs about {need / 2**30:.1f} GiB for 9 "
                    "views of 300 points, more than the 1.0 GiB free on cpu; use a smaller --size")
    assert not out.exists()


def test_render_memory_estimate_grows_with_size_views_and_colours():
    small = render_command.render_bytes(336, 9, 10_000, colors=False)
    assert render_command.render_bytes(672, 9, 10_000, colors=False) > 3.5 * small
    assert render_command.render_bytes(336, 18, 10_000, colors=False) == 2 * small
    assert render_command.render_bytes(336, 9, 10_000, colors=True) > small
    # the 720 GB allocation of issue 12 (100000 px, 9 views) is estimated as such
    assert render_command.render_bytes(100_000, 9, 10_000, colors=False) > 720e9


def test_render_still_renders_good_input(capsys, tmp_path, cloud_file):
    code = main(["render", str(cloud_file), "--out", str(tmp_path / "p"), "--size", "32",
                 "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0 and (tmp_path / "p" / "views.png").is_file()


def test_render_refuses_degenerate_clouds_naming_the_file(capsys, tmp_path):
    few = tmp_path / "few.npy"
    np.save(few, np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32))
    line = _error_line(capsys, "render", few, "--out", tmp_path / "a", "--device", "cpu")
    assert line.startswith(f"align3d-ad render: error: {few}: has 5 valid points; at least 16")
    same = tmp_path / "same.npy"
    np.save(same, np.ones((200, 3), np.float32))
    line = _error_line(capsys, "render", same, "--out", tmp_path / "b", "--device", "cpu")
    assert line.startswith(f"align3d-ad render: error: {same}: all 200 points are the same point")


@pytest.mark.parametrize("kind", ["object array", "plain pickle"])
def test_a_pickled_npy_is_refused_and_never_loaded_unsafely(capsys, tmp_path, kind):
    path = tmp_path / "cloud.npy"
    if kind == "object array":
        np.save(path, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(pickle.dumps({"points": [[0, 0, 0]]}))
    line = _error_line(capsys, "render", path, "--out", tmp_path / "p", "--device", "cpu")
    assert line.startswith(f"align3d-ad render: error: {path}: holds pickled Python objects")
    assert "refused" in line
    assert "allow_pickle" not in line and "unsafe" not in line
