"""Worker processes that read and prepare the next batches (issue 16): order, errors, log records."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pytest

from align3d_ad import profiling
from align3d_ad.data.loading import Failed, default_workers, prefetch_batches, unwrap
from align3d_ad.errors import DatasetFormatError

logger = logging.getLogger("align3d_ad.tests.loading")


@dataclass(frozen=True)
class _Load:
    """Item i -> (i, i * i, the pid that loaded it); item 5 is a bad file; item 3 warns."""

    def __call__(self, index: int) -> tuple[int, int, int]:
        with profiling.stage("read"):
            if index == 5:
                raise DatasetFormatError(f"/data/{index}.ply", "header ends early")
            if index == 3:
                logger.warning("item %d looks odd", index)
            return index, index * index, os.getpid()


BATCHES = [[0, 1, 2], [3, 4], [6, 7, 8, 9]]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_in_order_with_every_item(workers):
    got = [[unwrap(item)[:2] for item in batch] for batch in prefetch_batches(_Load(), BATCHES,
                                                                             workers=workers)]
    assert got == [[(i, i * i) for i in batch] for batch in BATCHES]


def test_workers_load_in_other_processes():
    pids = {unwrap(item)[2] for batch in prefetch_batches(_Load(), BATCHES, workers=2)
            for item in batch}  # fmt: skip
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


@pytest.mark.parametrize("workers", [0, 1])
def test_a_load_error_comes_back_as_the_same_one_line_error(workers):
    (batch,) = list(prefetch_batches(_Load(), [[4, 5]], workers=workers))
    assert unwrap(batch[0])[:2] == (4, 16)
    assert isinstance(batch[1].value, Failed)
    with pytest.raises(DatasetFormatError) as err:
        unwrap(batch[1])
    assert (str(err.value.path), err.value.problem) == ("/data/5.ply", "header ends early")
    assert str(err.value) == "/data/5.ply: header ends early"  # no traceback text inside


@pytest.mark.parametrize("workers", [0, 1])
def test_a_worker_warning_reaches_this_process_once(workers, caplog):
    caplog.set_level(logging.WARNING)
    list(prefetch_batches(_Load(), BATCHES, workers=workers))
    odd = [r for r in caplog.records if "looks odd" in r.getMessage()]
    assert [r.getMessage() for r in odd] == ["item 3 looks odd"]
    assert odd[0].name == logger.name and odd[0].levelno == logging.WARNING


def test_grouped_reader_warnings_are_merged_from_the_workers():
    merged: dict[str, list] = {}

    def add(grouped: dict) -> None:
        for key, paths in grouped.items():
            merged.setdefault(key, []).extend(paths)

    calls = iter(range(100))
    list(prefetch_batches(_Load(), [[0, 1], [2]], workers=1,
                          grouped=(lambda: {"odd": [next(calls)]}, add)))  # fmt: skip
    assert sorted(merged["odd"]) == [0, 1, 2]  # one record per item, taken in the worker


def test_worker_stage_times_are_added_here():
    profiling.enable()
    try:
        list(prefetch_batches(_Load(), BATCHES, workers=1))
        totals = profiling.totals()
    finally:
        profiling.disable()
    assert totals["read"] > 0 and totals["wait"] > 0


def test_default_workers_leaves_two_cores_for_the_main_process(monkeypatch):
    # a GPU outruns the workers: up to 16; the CPU's own backbone is the bottleneck: up to 2
    for cores, cuda, cpu in [(1, 0, 0), (2, 0, 0), (3, 1, 1), (4, 2, 2), (16, 14, 2), (64, 16, 2)]:
        monkeypatch.setattr("align3d_ad.data.loading._cores", lambda cores=cores: cores)
        assert (default_workers("cuda:0"), default_workers("cpu"), default_workers()) == (
            cuda, cpu, cpu)


def test_torchrun_processes_of_one_machine_share_its_cores(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")  # launched by torchrun: 4 ranks on this machine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    for cores, workers in [(2, 0), (16, 2), (64, 14), (96, 16), (12, 1)]:
        monkeypatch.setattr("align3d_ad.data.loading._cores", lambda cores=cores: cores)
        assert default_workers("cuda") == workers


def test_the_main_process_keeps_its_threads():
    import torch

    before = torch.get_num_threads()
    seen = [torch.get_num_threads() for _ in prefetch_batches(_Load(), BATCHES, workers=1)]
    assert seen == [before] * 3 and torch.get_num_threads() == before


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


@dataclass(frozen=True)
class _Threads:
    """Item i -> (torch threads, BLAS threads) while loading it."""

    def __call__(self, index: int) -> tuple[int, int]:
        import torch

        return torch.get_num_threads(), _blas_threads()


@pytest.mark.parametrize("workers", [0, 1])
def test_loading_runs_blas_on_one_thread_and_the_main_process_gets_its_pool_back(workers):
    # OpenBLAS threads spinning after a load took the cores torch renders on (align3d_ad._threads)
    import torch
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == 2
        seen = {unwrap(item) for batch in prefetch_batches(_Threads(), BATCHES, workers=workers)
                for item in batch}  # fmt: skip
        torch_threads = 1 if workers else torch.get_num_threads()
        assert seen == {(torch_threads, 1)}
        assert _blas_threads() == 2


def test_preparing_a_sample_runs_blas_on_one_thread(monkeypatch):
    import numpy as np
    from threadpoolctl import threadpool_limits

    from align3d_ad.config import DataConfig
    from align3d_ad.data import PointCloudSample
    from align3d_ad.data import prepare as prepare_module

    seen = []
    real = prepare_module._prepare
    monkeypatch.setattr(prepare_module, "_prepare",
                        lambda *a: seen.append(_blas_threads()) or real(*a))  # fmt: skip
    cloud = PointCloudSample.from_points(np.random.default_rng(0).normal(size=(500, 3)))
    with threadpool_limits(2, user_api="blas"):
        prep = prepare_module.prepare_sample(cloud, DataConfig())
        assert seen == [1] and _blas_threads() == 2
    assert prep.sample.num_points == 500


def test_negative_workers_are_refused():
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"):
        list(prefetch_batches(_Load(), BATCHES, workers=-1))


@dataclass(frozen=True)
class _Killed:
    """Item 4, read in a worker, kills its process the way the OS's out-of-memory killer does."""

    def __call__(self, index: int) -> int:
        import signal

        if index == 4 and _in_worker():
            os.kill(os.getpid(), signal.SIGKILL)
        return index


def _in_worker() -> bool:
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


def test_a_killed_worker_is_a_one_line_error_that_names_the_fix():
    from align3d_ad.errors import WorkerDiedError

    with pytest.raises(WorkerDiedError) as err:
        list(prefetch_batches(_Killed(), BATCHES, workers=1))
    message = str(err.value)
    assert "\n" not in message and "loader worker process died" in message
    assert "killed by signal" in message or "exited unexpectedly" in message
    assert "fewer --workers (now 1) or a smaller --batch-size" in message


def test_the_command_line_turns_a_late_worker_death_into_one_line(monkeypatch, capsys):
    # torch's SIGCHLD handler can raise anywhere in this process, e.g. inside the backbone
    from align3d_ad.app import cli

    def dies(_args):
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    monkeypatch.setattr(cli, "handler", lambda command: dies)
    assert cli.main(["info"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == ("align3d-ad info: error: a loader worker process died (DataLoader worker "
                   "(pid 4242) is killed by signal: Killed), most likely killed for memory; "
                   "rerun with fewer --workers or a smaller --batch-size")  # fmt: skip


def test_other_runtime_errors_are_not_taken_for_a_dead_worker():
    from align3d_ad.data.loading import worker_died

    assert worker_died(RuntimeError("CUDA out of memory")) is None
    assert worker_died(ValueError("DataLoader worker (pid 1) exited unexpectedly")) is None
