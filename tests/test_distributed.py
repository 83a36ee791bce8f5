"""Data-parallel runs: sharding arithmetic, the collectives, and torchrun with two gloo processes
giving the numbers of one process (issue 7)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from align3d_ad import distributed

CONFIG = """\
data:
  dataset: mvtec3d
  train_categories: [bagel]
  limit_per_split: 7
  plane_cut_distance: 0.001
  plane_fit_threshold: 0.0005
backbone:
  model_name: tiny-clip
  pretrained: null
train:
  stage1_epochs: 2
  stage1_scr_epochs: 1
  stage2_epochs: 2
  stage2_dpca_epochs: 1
  stage1_batch_size: 3
  stage2_batch_size: 3
"""


# ---------------------------------------------------------------- sharding, one process
@pytest.mark.parametrize("n, batch, world", [(10, 4, 2), (9, 4, 3), (3, 4, 2), (0, 4, 2), (17, 1, 4)])
def test_my_batches_partition_the_single_process_batches(monkeypatch, n, batch, world):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    single = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    shares = []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares.append(distributed.my_batches(n, batch))
        assert len(shares[-1]) <= distributed.batch_rounds(n, batch)
    assert sorted(b for share in shares for b in share) == single  # each batch exactly once
    assert max(len(s) for s in shares) == distributed.batch_rounds(n, batch)


def test_split_batch_shares_one_step(monkeypatch):
    idx = np.array([7, 3, 5, 1, 0])
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    parts = []
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        parts.append(distributed.split_batch(idx))
    assert parts[0].tolist() == [7, 5, 0] and parts[1].tolist() == [3, 1]


def test_single_process_helpers_are_the_identity():
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.gather({"a": 1}) == [{"a": 1}]
    assert distributed.gather_in_order([(1, "b"), (0, "a")]) == [(0, "a"), (1, "b")]
    assert distributed.all_gather(3) == [3]
    assert distributed.broadcast("x") == "x"
    assert distributed.my_batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    values = torch.tensor([1.5])
    assert distributed.all_reduce_gradients([p], values) is values
    assert p.grad.tolist() == [2.0, 2.0, 2.0]


def test_commands_that_run_in_one_process_refuse_torchrun(monkeypatch, tmp_path, capsys):
    from align3d_ad.app.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["synth", "--out", str(tmp_path / "d"), "--small", "--categories", "bagel"]) == 2
    assert "runs in one process; start it without torchrun" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- collectives, two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collectives_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    distributed.setup("cpu")
    try:
        a = torch.nn.Parameter(torch.zeros(2, 2))
        b = torch.nn.Parameter(torch.zeros(3))
        a.grad = torch.full((2, 2), float(rank + 1))  # rank 0: 1, rank 1: 2
        b.grad = None if rank == 1 else torch.arange(3.0)  # missing on rank 1: counts as 0
        values = distributed.all_reduce_gradients([a, b], torch.tensor([10.0 * (rank + 1), 1.0]))
        p = torch.nn.Parameter(torch.full((2,), float(rank)))
        distributed.broadcast_parameters([p])
        gathered = distributed.gather({"rank": rank, "rows": list(range(rank + 1))})
        result = {
            "a": a.grad.tolist(), "b": b.grad.tolist(), "values": values.tolist(),
            "broadcast": distributed.broadcast(f"from {rank}"), "param": p.detach().tolist(),
            "gathered": gathered, "all": distributed.all_gather(rank * 10),
            "in_order": distributed.gather_in_order([(2, "c"), (0, "a")] if rank == 0 else [(3, "d"), (1, "b")]),
        }  # fmt: skip
        Path(out, f"{rank}.json").write_text(json.dumps(result))
    finally:
        distributed.teardown()


def test_collectives_over_two_gloo_processes(tmp_path):
    mp.spawn(_collectives_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2))
    for r in (r0, r1):
        assert r["a"] == [[3.0, 3.0], [3.0, 3.0]]
        assert r["b"] == [0.0, 1.0, 2.0]
        assert r["values"] == [30.0, 2.0]
        assert r["broadcast"] == "from 0" and r["param"] == [0.0, 0.0]
        assert r["all"] == [0, 10]
    assert r0["gathered"] == [{"rank": 0, "rows": [0]}, {"rank": 1, "rows": [0, 1]}]
    assert r1["gathered"] is None
    assert r0["in_order"] == [[0, "a"], [1, "b"], [2, "c"], [3, "d"]] and r1["in_order"] is None


# ---------------------------------------------------------------- torchrun end to end
@pytest.fixture(scope="module")
def workspace(tmp_path_factory, synth_mvtec):
    root = tmp_path_factory.mktemp("dist")
    (root / "config.yaml").write_text(CONFIG)
    return root


def _run(workspace: Path, args: list[str], *, procs: int) -> None:
    """``align3d-ad ARGS`` in one process, or under torchrun with ``procs`` gloo processes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    if procs == 1:
        cmd = [sys.executable, "-m", "align3d_ad"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "align3d_ad"]  # fmt: skip
    done = subprocess.run([*cmd, *args, "--device", "cpu", "--quiet"], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(workspace, synth_mvtec):
    """The same training run in one process and in two."""
    for procs in (1, 2):
        _run(workspace, ["train", "--config", "config.yaml", "--root", str(synth_mvtec),
                         "--out", f"train{procs}", "--cache-dir", f"cache{procs}"], procs=procs)  # fmt: skip
    return workspace / "train1", workspace / "train2"


def test_torchrun_training_matches_one_process(trained, synth_mvtec, tmp_path):
    from align3d_ad.evaluate.runner import evaluate_dataset
    from align3d_ad.model.detector import load_detector

    one, two = (load_file(str(run / "head.safetensors")) for run in trained)
    assert one.keys() == two.keys() and one
    for name in one:  # the same steps, up to the order of floating-point additions
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    metrics = [
        evaluate_dataset(load_detector(run, device="cpu", use_cache=False), "mvtec3d", synth_mvtec,
                         out_dir=tmp_path / run.name, categories=["cookie"])["cookie"]
        for run in trained
    ]  # fmt: skip
    for level in ("object", "foreground", "grid"):
        for key, value in metrics[0][level].items():
            assert metrics[1][level][key] == pytest.approx(value, abs=1e-3), (level, key)


def test_torchrun_test_gives_identical_scores(workspace, trained, synth_mvtec):
    for procs in (1, 2):
        _run(workspace, ["test", "--checkpoint", str(trained[0]), "--dataset", "mvtec3d",
                         "--root", str(synth_mvtec), "--categories", "dowel",
                         "--out", f"test{procs}", "--cache-dir", f"test_cache{procs}"], procs=procs)  # fmt: skip
    one, two = workspace / "test1", workspace / "test2"
    assert json.loads((one / "metrics.json").read_text()) == json.loads((two / "metrics.json").read_text())
    for category in ("dowel",):
        with np.load(one / "scores" / f"{category}.npz") as a, np.load(two / "scores" / f"{category}.npz") as b:
            assert a.files == b.files
            for key in a.files:  # same samples, same order, bit-identical scores
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{category} {key}")


def test_torchrun_predict_writes_identical_outputs(workspace, trained, synth_mvtec):
    inputs = [str(synth_mvtec / "cookie" / split) for split in ("train", "validation", "test")]
    for procs in (1, 2):
        _run(workspace, ["predict", "--checkpoint", str(trained[0]), *inputs, "--out",
                         f"predict{procs}", "--no-cache"], procs=procs)  # fmt: skip
    one, two = workspace / "predict1", workspace / "predict2"
    rows = (one / "object_scores.csv").read_text().splitlines()
    assert len(rows) - 1 > 2 * 4, "needs more than one batch per rank to test the sharding"
    assert (two / "object_scores.csv").read_text() == (one / "object_scores.csv").read_text()
    outputs = sorted(p.name for p in one.iterdir() if p.suffix in (".npy", ".ply"))
    assert outputs == sorted(p.name for p in two.iterdir() if p.suffix in (".npy", ".ply"))
    for name in outputs:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
