"""Resume only a run, with its own config, never rewriting its record; damaged checkpoints refused.

Every check here answers in one line naming the file (or the config keys) at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from align3d_ad._version import __version__
from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.app.commands.demo import DEMO_CONFIG
from align3d_ad.errors import CheckpointMismatchError, ConfigError
from align3d_ad.model.checkpoint import (
    CHECKPOINT_JSON,
    FORMAT,
    HEAD_FILE,
    STATE_FILE,
    read_checkpoint,
)
from align3d_ad.model.detector import Detector, load_detector
from align3d_ad.training import train_model
from align3d_ad.training.resume import IGNORED_KEYS, config_differences
from pipeline_helpers import FAST_TRAIN, demo_config


def _hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative name) -> its SHA-256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }  # fmt: skip


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def finished(tmp_path, trained_run) -> Path:
    """A copy of a finished run folder, with the run information `align3d-ad train` writes."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "config.yaml").write_text("the record of the run\n")
    (run / "run.json").write_text('{"command": ["align3d-ad", "train"]}\n')
    (run / "run.log").write_text("")
    return run


def _train_args(root: Path, cache: Path, out: Path, *extra: object) -> list[str]:
    """The `train` command line that resolves to the config of the ``trained_run`` fixture."""
    sets = [x for item in ["data.train_categories=[bagel]", *FAST_TRAIN] for x in ("--set", item)]
    return [str(a) for a in ("train", "--config", DEMO_CONFIG, "--root", root, "--out", out,
                             "--cache-dir", cache, "--device", "cpu", *sets, *extra)]  # fmt: skip


# ------------------------------------------------------------------ finished runs (defect 2)
def test_resuming_a_finished_run_is_a_no_op_that_says_so(
    capsys, finished, synth_mvtec, feature_cache, tmp_path
):
    before = _hashes(finished)
    # where the run computes and caches may differ (IGNORED_KEYS): still the same run
    code = main(_train_args(synth_mvtec, tmp_path / "other_cache", finished, "--resume", "--no-cache"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "already trained" in err and "nothing to resume" in err
    after = _hashes(finished)
    log = after.pop("run.log")
    assert after == {k: v for k, v in before.items() if k != "run.log"}  # head, record: same bytes
    assert log != before["run.log"]
    text = (finished / "run.log").read_text()
    assert "resuming run" in text and "already trained" in text
    assert not (finished / "run.lock").exists()
    assert str(finished) in out


def test_train_model_resume_of_a_finished_run_trains_nothing(finished, synth_mvtec, feature_cache):
    before = _hashes(finished)
    result = train_model(demo_config(synth_mvtec, feature_cache), finished, resume=True)
    assert result.already_trained and result.history == [] and result.epoch_seconds == {}
    assert _hashes(finished) == before


# ------------------------------------------------------------------ the config (defect 5)
@pytest.mark.parametrize(
    ("extra", "key", "values"),
    [
        (["--seed", "5"], "seed", "(run: 0, now: 5)"),
        (["--set", "train.lr=0.01"], "train.lr", "(run: 0.001, now: 0.01)"),
        (["--set", "method.n_ctx=4"], "method.n_ctx", "(run: 12, now: 4)"),
    ],
)
def test_resume_with_another_config_is_refused_naming_the_key(
    capsys, finished, synth_mvtec, feature_cache, extra, key, values
):
    before = _hashes(finished)
    code = main(_train_args(synth_mvtec, feature_cache, finished, "--resume", "--quiet", *extra))
    _, err = capsys.readouterr()
    line = _one_line(err)
    assert code == EXIT_USER_ERROR
    assert f"{key} {values}" in line and "another config" in line and str(finished) in line
    assert _hashes(finished) == before  # nothing written: not even run.log or a lock file


def test_train_model_refuses_another_config(finished, synth_mvtec, feature_cache):
    config = demo_config(synth_mvtec, feature_cache, "seed=3", "train.stage2_epochs=5")
    with pytest.raises(CheckpointMismatchError) as info:
        train_model(config, finished, resume=True)
    message = str(info.value)
    assert "seed (run: 0, now: 3)" in message and "train.stage2_epochs (run: 2, now: 5)" in message
    assert "\n" not in message


def test_config_differences_ignore_where_a_run_computes_not_what_it_learns(synth_mvtec, tmp_path):
    stored = demo_config(synth_mvtec, tmp_path)
    same = stored.replace(**{
        "device": "cuda:1", "backbone.cache_dir": "/elsewhere", "backbone.use_cache": False,
        "backbone.weights": "/w/clip.pt", "data.root": os.path.relpath(synth_mvtec),
    })  # fmt: skip
    assert {k.split(".")[0] for k in IGNORED_KEYS} == {"device", "backbone"}
    assert config_differences(stored, same) == []
    other = stored.replace(**{"method.n_ctx": 4, "data.root": str(tmp_path)})
    assert config_differences(stored, other) == [
        ("data.root", str(synth_mvtec), str(tmp_path)), ("method.n_ctx", 12, 4),
    ]


# ------------------------------------------------------------------ the folder (defect 5)
def _not_runs(tmp_path: Path, synth_mvtec: Path) -> dict[str, tuple[Path, str]]:
    data = tmp_path / "data" / "bagel"
    shutil.copytree(synth_mvtec / "bagel" / "train", data / "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    started = tmp_path / "started"  # a run killed while it was still extracting features
    started.mkdir()
    for name in ("config.yaml", "run.json", "run.log"):
        (started / name).write_text("x\n")
    return {
        "dataset": (data, "not a run folder (no checkpoint.json or state.pt)"),
        "empty": (empty, "not a run folder (no checkpoint.json or state.pt)"),
        "missing": (tmp_path / "nope", "no such folder"),
        "started": (started, "stopped before its first checkpoint"),
    }


@pytest.mark.parametrize("kind", ["dataset", "empty", "missing", "started"])
def test_resume_refuses_a_folder_that_holds_no_run(capsys, tmp_path, synth_mvtec, feature_cache, kind):
    folder, problem = _not_runs(tmp_path, synth_mvtec)[kind]
    before = _hashes(folder) if folder.exists() else None
    code = main(_train_args(synth_mvtec, feature_cache, folder, "--resume", "--quiet"))
    _, err = capsys.readouterr()
    line = _one_line(err)
    assert code == EXIT_USER_ERROR and problem in line and str(folder) in line
    if before is None:
        assert not folder.exists()
    else:
        assert _hashes(folder) == before and not (folder / "run.lock").exists()


def test_train_model_refuses_to_resume_a_folder_without_a_run(tmp_path, synth_mvtec, feature_cache):
    with pytest.raises(ConfigError, match="not a run folder"):
        train_model(demo_config(synth_mvtec, feature_cache), tmp_path, resume=True)
    assert list(tmp_path.iterdir()) == []


def test_resuming_an_interrupted_run_keeps_its_record(capsys, finished, synth_mvtec, feature_cache):
    state = torch.load(finished / STATE_FILE, weights_only=True)
    state["progress"] = json.dumps({"stage": 2, "epoch": 1})  # as if stopped after epoch 1
    torch.save(state, finished / STATE_FILE)
    record = {n: (finished / n).read_bytes() for n in ("config.yaml", "run.json")}
    code = main(_train_args(synth_mvtec, feature_cache, finished, "--resume", "--quiet"))
    assert code == 0, capsys.readouterr().err
    assert {n: (finished / n).read_bytes() for n in record} == record
    assert read_checkpoint(finished)["progress"] == {"stage": 3, "epoch": 0}
    log = (finished / "run.log").read_text()
    assert "resuming run" in log and "--resume" in log and "at stage 2, epoch 1" in log


# ------------------------------------------------------------------ damaged checkpoints (defect 7)
def _rewrite_head(run: Path, edit) -> None:
    path = run / HEAD_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors, meta = edit(load_file(str(path)), dict(meta))
    save_file(tensors, str(path), metadata=meta)


def _refused(run: Path, error: type, *needles: str) -> str:
    with pytest.raises(error) as info:
        load_detector(run, device="cpu")
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.mark.parametrize("keep", [0, 4, 20, "half", -8])
def test_truncated_head_is_one_line_naming_the_file(finished, keep):
    path = finished / HEAD_FILE
    data = path.read_bytes()
    cut = len(data) // 2 if keep == "half" else keep if keep >= 0 else len(data) + keep
    path.write_bytes(data[:cut])
    _refused(finished, ConfigError, str(path), "not a readable safetensors file")


def test_missing_extra_and_wrong_shape_tensors_are_named(finished):
    names = sorted(load_file(str(finished / HEAD_FILE)))
    gone = names[0]
    _rewrite_head(finished, lambda t, m: ({k: v for k, v in t.items() if k != gone}, m))
    _refused(finished, CheckpointMismatchError, str(finished / HEAD_FILE), f"lacks tensor {gone!r}")

    def reshape(t, m):
        t[gone] = torch.zeros(3, 5)
        t["extra.weight"] = torch.zeros(1)
        return t, m

    _rewrite_head(finished, reshape)
    message = _refused(finished, CheckpointMismatchError, str(finished / HEAD_FILE),
                       "holds unexpected tensor 'extra.weight'", f"tensor {gone!r} has shape (3, 5)")  # fmt: skip
    assert "the config needs" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object, got list"),
        ('{"config": {}}', "has no 'format' key"),
        ('{"format": "one", "config": {}}', "format must be a positive integer, got 'one'"),
    ],
)
def test_bad_checkpoint_json_is_one_line_naming_the_file(finished, text, problem):
    (finished / CHECKPOINT_JSON).write_text(text)
    _refused(finished, ConfigError, str(finished / CHECKPOINT_JSON), problem)


def test_checkpoint_json_without_a_part_or_with_a_bad_config_names_the_key(finished):
    doc = json.loads((finished / CHECKPOINT_JSON).read_text())
    good = json.dumps(doc)
    del doc["backbone"]
    (finished / CHECKPOINT_JSON).write_text(json.dumps(doc))
    _refused(finished, ConfigError, str(finished / CHECKPOINT_JSON), "'backbone' must be a JSON object")
    doc = json.loads(good)
    doc["config"]["train"]["learning_rate"] = 1
    (finished / CHECKPOINT_JSON).write_text(json.dumps(doc))
    _refused(finished, ConfigError, str(finished / CHECKPOINT_JSON), "train.learning_rate")


def test_a_newer_checkpoint_format_is_refused_naming_both_versions(finished):
    doc = json.loads((finished / CHECKPOINT_JSON).read_text())
    doc["format"] = FORMAT + 1
    doc["versions"]["align3d_ad"] = "9.9.9"
    (finished / CHECKPOINT_JSON).write_text(json.dumps(doc))
    _refused(finished, CheckpointMismatchError, str(finished / CHECKPOINT_JSON),
             f"format {FORMAT + 1} (written by align3d-ad 9.9.9)",
             f"align3d-ad {__version__} reads format {FORMAT} at most")  # fmt: skip


def test_a_head_of_a_newer_format_is_refused(finished):
    _rewrite_head(finished, lambda t, m: (t, {**m, "format": str(FORMAT + 1)}))
    _refused(finished, CheckpointMismatchError, str(finished / HEAD_FILE),
             f"format {FORMAT + 1}", f"reads format {FORMAT} at most")  # fmt: skip


def test_checkpoint_files_record_their_format(trained_run):
    assert read_checkpoint(trained_run)["format"] == FORMAT
    with safe_open(str(trained_run / HEAD_FILE), framework="pt") as fh:
        assert fh.metadata()["format"] == str(FORMAT)
    assert torch.load(trained_run / STATE_FILE, weights_only=True)["format"] == FORMAT
    Detector.from_checkpoint(trained_run, device="cpu")  # and they load


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "newer", "wrong_shape"])
def test_a_damaged_resume_state_is_one_line_naming_state_pt(
    finished, synth_mvtec, feature_cache, damage
):
    path = finished / STATE_FILE
    data = path.read_bytes()
    state = torch.load(path, weights_only=True)
    state["progress"] = json.dumps({"stage": 2, "epoch": 1})
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(256))
    elif damage == "newer":
        torch.save({**state, "format": FORMAT + 1}, path)
    else:
        key = sorted(state["head"])[0]
        state["head"][key] = torch.zeros(2, 7)
        torch.save(state, path)
    error = CheckpointMismatchError if damage in ("newer", "wrong_shape") else ConfigError
    with pytest.raises(error) as info:
        train_model(demo_config(synth_mvtec, feature_cache), finished, resume=True)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if damage == "newer":
        assert f"format {FORMAT + 1}" in message and f"reads format {FORMAT} at most" in message
    if damage == "wrong_shape":
        assert "has shape (2, 7)" in message


def test_test_command_on_a_truncated_head_is_one_line(capsys, finished, synth_mvtec, tmp_path):
    path = finished / HEAD_FILE
    path.write_bytes(path.read_bytes()[:100])
    code = main(["test", "--checkpoint", str(finished), "--dataset", "mvtec3d", "--root",
                 str(synth_mvtec), "--categories", "dowel", "--out", str(tmp_path / "t"),
                 "--device", "cpu", "--quiet"])  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert code == EXIT_USER_ERROR
    assert line.startswith("align3d-ad test: error: ") and str(path) in line
