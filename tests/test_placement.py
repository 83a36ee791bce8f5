"""Device placement on every CI run, without a GPU (issue 17): the CLI under an emulated ``cuda:0``.

:mod:`emulated_device` makes ``cuda`` tensors CPU tensors tagged as living on the device and refuses
what a GPU refuses (ops mixing devices, numpy of device tensors, ops without a deterministic CUDA
kernel under ``--deterministic``). The first tests check the emulation itself on small cases; the
last ones run ``train`` (then ``--resume``), ``test`` and ``predict`` with ``--device cuda`` on a
tiny synthetic dataset and compare every number with the same commands on the CPU: the arithmetic
is the CPU's, so anything but bitwise equality means the device changed what is computed (e.g.
values drawn from the device's random generator).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from align3d_ad.app.cli import main
from align3d_ad.render.knn import BACKEND_ENV
from emulated_device import PlacementError, emulated_cuda
from pipeline_helpers import FAST_TRAIN, stops_at_call


@pytest.fixture
def emu(monkeypatch):
    with emulated_cuda(monkeypatch) as mode:
        yield mode


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


# ---------------------------------------------------------------- the emulation itself
def test_device_tensors_say_cuda_and_ops_keep_them_there(emu):
    host = torch.arange(6.0).reshape(2, 3)
    dev = host.to("cuda")
    assert dev.device == torch.device("cuda", 0) and dev.is_cuda and host.device.type == "cpu"
    out = (dev * 2 + 1).sum(dim=0)
    assert out.device.type == "cuda" and emu.on_device(dev[0]) and emu.on_device(dev.view(-1))
    assert torch.zeros(2, device=dev.device).device.type == "cuda"
    assert torch.zeros_like(dev, device="cpu").device.type == "cpu"
    back = dev.cpu()
    assert back.device.type == "cpu" and back.numpy().tolist() == host.numpy().tolist()
    assert emu.transfers == {"host to device": 1, "device to host": 1}
    assert float(dev.sum()) == 15.0 and dev.tolist() == host.tolist()  # .item/.tolist are fine


@pytest.mark.parametrize("op", [
    lambda d, h: d + h, lambda d, h: torch.cat([d, h]), lambda d, h: h.index_select(0, d.long()),
    lambda d, h: torch.nn.functional.linear(h, d.reshape(1, 3)),
])  # fmt: skip
def test_ops_mixing_devices_are_refused(emu, op):
    dev, host = torch.ones(3).to("cuda"), torch.ones(3)
    with pytest.raises(PlacementError, match="mixes devices"):
        op(dev, host)
    assert len(emu.violations) == 1 and "test_placement.py" in emu.violations[0]


def test_what_a_gpu_allows_is_allowed(emu):
    dev = torch.arange(5.0).to("cuda")
    assert (dev + torch.tensor(2.0)).device.type == "cuda"  # CPU 0-dim tensors mix
    assert dev[torch.tensor([0, 2])].tolist() == [0.0, 2.0]  # CPU indices index device tensors
    assert dev[torch.tensor([True, False, True, False, False])].tolist() == [0.0, 2.0]
    host = torch.zeros(5)
    host[:] = dev  # basic indexing copies across devices
    host.copy_(dev)
    assert host.tolist() == dev.tolist() and not emu.violations
    with pytest.raises(PlacementError, match="index on cuda"):
        host[torch.tensor([1]).to("cuda")]


def test_numpy_of_device_tensors_is_refused(emu):
    dev = torch.ones(2).to("cuda")
    with pytest.raises(PlacementError, match=r"numpy\(\) of a tensor on cuda:0"):
        dev.numpy()
    with pytest.raises(PlacementError, match=r"__array__\(\) of a tensor on cuda:0"):
        np.asarray(dev)
    assert np.asarray(dev.cpu()).tolist() == [1.0, 1.0]


def test_modules_gradients_and_optimiser_state_live_on_the_device(emu):
    layer = torch.nn.Linear(3, 2).to("cuda")
    assert all(emu.on_device(p) and p.device.type == "cuda" for p in layer.parameters())
    layer(torch.randn(4, 3).to("cuda")).square().sum().backward()
    assert emu.on_device(layer.weight.grad)
    opt = torch.optim.Adam(layer.parameters())
    opt.step()
    assert emu.on_device(opt.state[layer.weight]["exp_avg"])
    layer.load_state_dict({k: v.cpu() for k, v in layer.state_dict().items()})  # copies in
    assert emu.on_device(layer.weight)
    with pytest.raises(PlacementError, match="mixes devices"):
        layer(torch.randn(4, 3))  # a CPU input to a device module
    with pytest.raises(PlacementError, match="gradient on cpu assigned"):
        layer.bias.grad = torch.zeros(2)


def test_device_random_draws_come_from_their_own_generator(emu):
    torch.manual_seed(7)
    on_host = torch.randn(4)
    torch.manual_seed(7)
    on_device = torch.randn(4, device="cuda")
    assert emu.on_device(on_device) and len(emu.device_draws) == 1
    assert not torch.equal(on_host, on_device.cpu())  # another stream, as on a GPU
    torch.manual_seed(7)
    assert torch.equal(torch.randn(4, device="cuda").cpu(), on_device.cpu())  # seeded by manual_seed
    assert torch.equal(torch.randn(4), on_host)  # and the CPU stream is untouched


def test_ops_without_deterministic_cuda_kernels_are_refused(emu, deterministic):
    maps = torch.rand(1, 2, 4, 4).to("cuda").requires_grad_()
    with pytest.raises(PlacementError, match="no deterministic CUDA kernel"):
        torch.nn.functional.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    with torch.no_grad():  # forward only: deterministic
        torch.nn.functional.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    with pytest.raises(PlacementError, match="no deterministic CUDA kernel"):
        torch.histc(maps.detach(), bins=4)


# ---------------------------------------------------------------- the CLI on the emulated device
def _mini_dataset(source: Path, dest: Path) -> Path:
    """Two samples (good, crack) of bagel and cookie, copied from the synthetic dataset."""
    for category in ("bagel", "cookie"):
        for defect in ("good", "crack"):
            for kind, suffix in (("xyz", "tiff"), ("rgb", "png"), ("gt", "png")):
                src = source / category / "test" / defect / kind / f"000.{suffix}"
                target = dest / category / "test" / defect / kind / src.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target)
    return dest


SETTINGS = [*FAST_TRAIN, "data.train_categories=[bagel]", "render.views=[[x, 0], [y, 30]]",
            "render.image_size=112"]


def _cli(*argv) -> int:
    return main([str(a) for a in argv])


def _train(root: Path, out: Path, device: str, *extra: str) -> int:
    sets = [x for item in SETTINGS for x in ("--set", item)]
    return _cli("train", "--config", "configs/demo.yaml", "--root", root, "--out", out,
                "--device", device, "--no-cache", "--quiet", "--deterministic", *sets, *extra)  # fmt: skip


def _test_and_predict(run: Path, root: Path, out: Path, device: str) -> None:
    assert _cli("test", "--checkpoint", run, "--dataset", "mvtec3d", "--root", root,
                "--categories", "cookie", "--out", out / "test", "--device", device,
                "--no-cache", "--quiet") == 0  # fmt: skip
    cloud = root / "cookie" / "test" / "crack" / "xyz" / "000.tiff"
    assert _cli("predict", "--checkpoint", run, cloud, "--out", out / "predict",
                "--device", device, "--no-cache", "--quiet") == 0  # fmt: skip


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory, synth_mvtec):
    """train, test and predict with ``--device cpu`` (the reference numbers).

    They run under the emulation too: any active torch-function mode changes some kernel choices
    (e.g. ``nn.MultiheadAttention`` leaves its fused path), so only runs under the same mode can
    be compared bit for bit. With ``--device cpu`` no tensor is ever on the device. They take the
    torch neighbour searches, which ``auto`` chooses on the device (``render/knn.py``; scipy's,
    the CPU default, agree with them up to ties, ``tests/render/test_render_neighbour_paths.py``).
    """
    base = tmp_path_factory.mktemp("placement")
    root = _mini_dataset(synth_mvtec, base / "data")
    before = torch.are_deterministic_algorithms_enabled()
    try:
        with pytest.MonkeyPatch.context() as patch, emulated_cuda(patch) as emu:
            patch.setenv(BACKEND_ENV, "torch")
            torch.manual_seed(0)
            assert _train(root, base / "cpu" / "run", "cpu") == 0
            _test_and_predict(base / "cpu" / "run", root, base / "cpu", "cpu")
    finally:
        torch.use_deterministic_algorithms(before)
    assert emu.violations == [] and emu.transfers == {}
    return root, base


def _same_outputs(a: Path, b: Path) -> None:
    head_a, head_b = load_file(a / "run" / "head.safetensors"), load_file(b / "run" / "head.safetensors")
    assert head_a.keys() == head_b.keys()
    for key in head_a:
        assert torch.equal(head_a[key], head_b[key]), key
    scores_a, scores_b = np.load(a / "test" / "scores" / "cookie.npz"), np.load(b / "test" / "scores" / "cookie.npz")
    assert scores_a.files == scores_b.files
    for key in scores_a.files:
        np.testing.assert_array_equal(scores_a[key], scores_b[key], err_msg=key)
    pred = sorted(p.name for p in (a / "predict").glob("*.npy"))
    assert pred and pred == sorted(p.name for p in (b / "predict").glob("*.npy"))
    for name in pred:
        np.testing.assert_array_equal(np.load(a / "predict" / name), np.load(b / "predict" / name))


def test_cli_on_the_emulated_gpu_gives_the_cpu_numbers(cpu_runs, monkeypatch, deterministic):
    """train --deterministic, test, predict with --device cuda: no placement problem, no value drawn
    on the device, and bitwise the CPU's head, scores and predictions."""
    root, base = cpu_runs
    with emulated_cuda(monkeypatch) as emu:
        torch.manual_seed(0)
        assert _train(root, base / "cuda" / "run", "cuda") == 0
        _test_and_predict(base / "cuda" / "run", root, base / "cuda", "cuda")
    assert emu.violations == [] and emu.device_draws == []
    assert emu.transfers["host to device"] > 0 and emu.transfers["device to host"] > 0
    _same_outputs(base / "cpu", base / "cuda")


def test_resume_on_the_emulated_gpu_equals_the_uninterrupted_cpu_run(cpu_runs, monkeypatch,
                                                                     deterministic):
    """An emulated-GPU run interrupted in stage 2 and resumed there (optimiser state read back
    onto the device) ends with the CPU run's head, bit for bit."""
    from align3d_ad.training import trainer

    root, base = cpu_runs
    run = base / "resumed" / "run"
    real_epoch = trainer.stage2_epoch
    interrupted = stops_at_call(real_epoch)  # in the second stage-2 epoch

    with emulated_cuda(monkeypatch) as emu:
        monkeypatch.setattr(trainer, "stage2_epoch", interrupted)
        torch.manual_seed(0)
        assert _train(root, run, "cuda") == 130
        monkeypatch.setattr(trainer, "stage2_epoch", real_epoch)
        assert _train(root, run, "cuda", "--resume") == 0
    assert emu.violations == [] and emu.device_draws == []
    head_cpu, head_resumed = (load_file(d / "head.safetensors") for d in (base / "cpu" / "run", run))
    for key in head_cpu:
        assert torch.equal(head_cpu[key], head_resumed[key]), key
