"""Run folders are locked by the one process writing them: never shared, stale locks taken over.

Semantics (docs/runs.md): a run folder held by a live process is never written by another. A new
run (`train`, `test`, `predict`, `reproduce`, `demo`) skips it for the next free ``-2``, ``-3``
name, even when it holds only run information; ``train --resume`` on it is refused in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from align3d_ad._atomic import atomic_path, atomic_write_text
from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.app.commands.demo import DEMO_CONFIG
from align3d_ad.app.runlock import LOCK_FILE, LockHolder, held_lock, release_all, try_lock
from align3d_ad.app.runs import new_run_dir
from align3d_ad.model.checkpoint import HEAD_FILE
from pipeline_helpers import FAST_TRAIN

HOLD = (
    "import sys\n"
    "from align3d_ad.app.runlock import try_lock, LockHolder\n"
    "lock = try_lock(sys.argv[1], ['holder'])\n"
    "print('busy' if isinstance(lock, LockHolder) else 'locked', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextlib.contextmanager
def held_elsewhere(folder: Path) -> Iterator[subprocess.Popen]:
    """``folder`` locked by another live process until the block ends (it then exits cleanly)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=60)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(autouse=True)
def _no_locks_left():
    yield
    release_all()


def _extracting(folder: Path) -> Path:
    """What a run still reading its data or extracting features holds: only its run information."""
    folder.mkdir(parents=True)
    for name in ("config.yaml", "run.json", "run.log"):
        (folder / name).write_text(f"{name}\n")
    return folder


def test_a_folder_a_live_run_holds_is_never_reused(tmp_path):
    run = _extracting(tmp_path / "run")
    before = _hashes(run)
    with held_elsewhere(run) as proc:
        holder = json.loads((run / LOCK_FILE).read_text())
        assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
        fresh = new_run_dir(run)
        assert fresh == tmp_path / "run-2" and held_lock(fresh) is not None
        assert new_run_dir(run) == fresh  # this process's own folder, still unused
        assert {k: v for k, v in _hashes(run).items() if k != LOCK_FILE} == before
    # a clean exit removes the lock file: the folder is reusable again
    assert not (run / LOCK_FILE).exists()
    release_all()
    assert not (fresh / LOCK_FILE).exists()
    assert new_run_dir(run) == run and held_lock(run) is not None


def test_try_lock_reports_the_live_holder_and_this_process_holds_once(tmp_path):
    with held_elsewhere(tmp_path) as proc:
        holder = try_lock(tmp_path)
        assert isinstance(holder, LockHolder) and holder.pid == proc.pid
        assert f"pid {proc.pid} on {socket.gethostname()} since " in holder.describe()
    lock = try_lock(tmp_path)
    assert not isinstance(lock, LockHolder) and try_lock(tmp_path) is lock
    out = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], input="", text=True,
                         capture_output=True, check=True).stdout  # fmt: skip
    assert out.strip() == "busy"
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_command_run_from_a_notebook_leaves_the_notebook_s_locks_held(tmp_path, capsys):
    mine = try_lock(tmp_path)  # e.g. a notebook writing into a folder of its own
    assert main(["synth", "--format", "mvtec3d", "--categories", "cookie", "--small",
                 "--out", str(tmp_path / "data")]) == 0  # fmt: skip
    assert held_lock(tmp_path) is mine and mine.held and (tmp_path / LOCK_FILE).exists()
    release_all()
    assert not mine.held and not (tmp_path / LOCK_FILE).exists()


def test_a_second_writer_is_refused_or_sent_elsewhere(capsys, trained_run, synth_mvtec,
                                                      feature_cache, tmp_path):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _hashes(run)
    sets = [x for item in ["data.train_categories=[bagel]", *FAST_TRAIN] for x in ("--set", item)]
    resume = ["train", "--config", DEMO_CONFIG, "--root", synth_mvtec, "--out", run, "--resume",
              "--cache-dir", feature_cache, "--device", "cpu", "--quiet", *sets]  # fmt: skip
    out_dir = _extracting(tmp_path / "scores")
    with held_elsewhere(run) as proc, held_elsewhere(out_dir):
        code = main([str(a) for a in resume])
        line = _one_line(capsys.readouterr().err)
        assert code == EXIT_USER_ERROR
        assert f"run folder {run} is in use by pid {proc.pid}" in line
        # a new run on a folder another run holds (still extracting) goes to a fresh -2 folder
        code = main(["test", "--checkpoint", str(run), "--dataset", "mvtec3d", "--root",
                     str(synth_mvtec), "--categories", "dowel", "--out", str(out_dir),
                     "--device", "cpu", "--cache-dir", str(feature_cache)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        assert f"{out_dir} is in use by pid" in err and f"writing to {out_dir}-2 instead" in err
        assert (tmp_path / "scores-2" / "metrics.json").is_file()
        assert not (tmp_path / "scores-2" / LOCK_FILE).exists()  # released when the command ended
    assert _hashes(run) == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.yaml", "run.json", "run.log"]


def test_a_stale_lock_is_reported_and_taken_over(capsys, trained_run, synth_mvtec, feature_cache,
                                                tmp_path):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    head = (run / HEAD_FILE).read_bytes()
    with held_elsewhere(run) as proc:
        os.kill(proc.pid, signal.SIGKILL)  # dies holding it: the file stays, the lock does not
        proc.wait(timeout=60)
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid
    sets = [x for item in ["data.train_categories=[bagel]", *FAST_TRAIN] for x in ("--set", item)]
    code = main([str(a) for a in ["train", "--config", DEMO_CONFIG, "--root", synth_mvtec,
                                  "--out", run, "--resume", "--cache-dir", feature_cache,
                                  "--device", "cpu", *sets]])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"took over the stale lock of pid {proc.pid}" in err and "already trained" in err
    assert (run / HEAD_FILE).read_bytes() == head and not (run / LOCK_FILE).exists()


def test_a_folder_with_results_gets_no_lock_file(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    assert new_run_dir(done) == tmp_path / "done-2"
    assert sorted(p.name for p in done.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, mask):
    import torch
    from safetensors.torch import save_file

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / HEAD_FILE) as tmp:  # safetensors replaces the temporary file
            save_file({"w": torch.zeros(2)}, str(tmp))
        with atomic_path(tmp_path / "state.pt") as tmp:
            torch.save({"w": torch.zeros(2)}, tmp)
    finally:
        os.umask(old)
    for name in ("a.txt", HEAD_FILE, "state.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_a_trained_run_is_readable_by_others(trained_run):
    mask = os.umask(0o022)
    os.umask(mask)
    for name in (HEAD_FILE, "checkpoint.json", "state.pt"):
        assert (trained_run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
