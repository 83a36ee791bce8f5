"""What would break or drift on the first real GPU (issue 17, points 1, 2, 3 and 5), checked on the
CPU: torchrun ranks and their GPUs, the prompts' first values, ``--deterministic`` and its
deterministic upsampling, and fp16 training. The ``cuda``-marked tests run where a GPU is
(``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file

from align3d_ad import distributed
from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.backbone import BackboneSpec, PromptableTextEncoder, load_backbone
from align3d_ad.config import load_config
from align3d_ad.device import resolve_device, set_deterministic
from align3d_ad.errors import ConfigError
from align3d_ad.model.prompts import PromptLearner
from align3d_ad.render.upsample import interpolation_matrix, upsample_bilinear
from align3d_ad.training import stages
from emulated_device import emulated_cuda
from pipeline_helpers import FAST_TRAIN, stops_at_call


@pytest.fixture
def restore_determinism(monkeypatch):
    """Put the deterministic-algorithms switch (and CUBLAS_WORKSPACE_CONFIG) back afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(before)


# ---------------------------------------------------------------- 1. torchrun and its GPUs
@pytest.fixture
def rank_one_of_two(monkeypatch):
    """torchrun's environment for rank 1 of 2 on a machine that reports two GPUs."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls: dict[str, list] = {"set_device": [], "init": []}
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(d))
    monkeypatch.setattr(dist, "init_process_group",
                        lambda **kw: calls["init"].append(kw["backend"]))  # fmt: skip
    monkeypatch.setattr(dist, "new_group", lambda **kw: "gloo group")
    yield calls
    distributed.teardown()


def test_under_torchrun_each_rank_uses_the_gpu_of_its_local_rank(rank_one_of_two):
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert distributed.setup("cuda") is True
    assert rank_one_of_two == {"set_device": [1], "init": ["nccl"]}


@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_under_torchrun_an_explicit_gpu_index_is_refused(rank_one_of_two, device):
    message = rf"--device {device} under torchrun would put every rank on one GPU; pass --device cuda"
    with pytest.raises(ConfigError, match=message):
        resolve_device(device)
    with pytest.raises(ConfigError, match=message):
        distributed.setup(device)
    assert rank_one_of_two == {"set_device": [], "init": []}  # refused before joining


def test_more_ranks_than_gpus_is_refused(rank_one_of_two, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK 1 but only 1 GPU\(s\) visible"):
        resolve_device("cuda")


def test_cli_under_torchrun_refuses_an_explicit_gpu_in_one_line(rank_one_of_two, capsys, tmp_path):
    code = main(["test", "--checkpoint", str(tmp_path), "--dataset", "mvtec3d", "--root",
                 str(tmp_path), "--out", str(tmp_path / "t"), "--device", "cuda:0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USER_ERROR and len(err) == 1
    assert err[0].startswith("align3d-ad test: error: --device cuda:0 under torchrun")
    assert not (tmp_path / "t").exists()


def test_without_torchrun_an_explicit_gpu_index_is_kept(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


# ---------------------------------------------------------------- 2. the prompts' first values
def test_prompt_init_draws_on_the_cpu_generator_whatever_the_device(monkeypatch):
    """Built on the (emulated) GPU, a learner starts from the CPU construction's values: a GPU's
    generator would draw others from the same seed."""
    encoder = PromptableTextEncoder(load_backbone(BackboneSpec.tiny()))
    torch.manual_seed(5)
    on_cpu = PromptLearner(encoder)
    with emulated_cuda(monkeypatch) as emu:
        encoder.to("cuda")
        torch.manual_seed(5)
        on_gpu = PromptLearner(encoder)
        assert all(emu.on_device(p) for p in on_gpu.parameters())
        values = {k: v.cpu() for k, v in on_gpu.state_dict().items()}
    assert emu.device_draws == [] and emu.violations == []
    for key, value in on_cpu.state_dict().items():
        assert torch.equal(values[key], value), key


# ---------------------------------------------------------------- 3. --deterministic
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape, size", [((3, 2, 14, 14), (224, 224)), ((2, 2, 24, 24), (336, 336)),
                                         ((2, 1, 5, 7), (12, 9)), ((1, 1, 6, 6), (2, 3))])  # fmt: skip
def test_matrix_upsampling_equals_f_interpolate_forward_and_backward(shape, size, align_corners):
    """The same linear map as F.interpolate (float64: 1e-12); in float32 the forward agrees to
    1e-6 and the backward, sums of up to (S/G)^2 products, to float32's rounding of such sums
    (F.interpolate's own float32 backward is up to 2.7e-6 of the largest gradient from the exact
    one; ours is closer)."""
    x64 = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    grad64 = torch.rand(*shape[:2], *size, dtype=torch.float64)
    results = {}
    for name, x, grad in (("64", x64, grad64),
                          ("32", x64.detach().float().requires_grad_(), grad64.float())):  # fmt: skip
        ref = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
        out = upsample_bilinear(x, size, align_corners=align_corners)
        assert out.shape == ref.shape and out.dtype == x.dtype
        results[name] = (ref, out, *(torch.autograd.grad(y, x, grad)[0] for y in (ref, out)))
    ref, out, ref_grad, out_grad = results["64"]
    assert (out - ref).abs().max() <= 1e-12 and (out_grad - ref_grad).abs().max() <= 1e-12
    exact_grad, scale = ref_grad, ref_grad.abs().max()
    ref, out, ref_grad, out_grad = results["32"]
    assert (out - ref).abs().max() <= 1e-6
    assert (out_grad.double() - exact_grad).abs().max() <= 3e-6 * scale
    assert (out_grad - ref_grad).abs().max() <= 3e-6 * scale


def test_interpolation_rows_are_two_taps_summing_to_one():
    m = interpolation_matrix(24, 336)
    assert m.shape == (336, 24) and torch.allclose(m.sum(dim=1), torch.ones(336))
    assert int((m != 0).sum(dim=1).max()) <= 2 and bool((m >= 0).all())


def test_set_deterministic_turns_the_switches_on(restore_determinism, monkeypatch):
    torch.use_deterministic_algorithms(False)
    set_deterministic(False)  # off: leaves everything as it is
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    set_deterministic()
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and not torch.backends.cudnn.benchmark
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a valid value the user chose stays
    set_deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_stage2_upsamples_with_matrices_under_deterministic_algorithms(restore_determinism, monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "upsample_bilinear", lambda *a, **k: calls.append(a) or upsample_bilinear(*a, **k))
    maps = torch.rand(2, 2, 6, 6)
    torch.use_deterministic_algorithms(False)
    expected = F.interpolate(maps, size=(30, 30), mode="bilinear", align_corners=False)
    assert torch.equal(stages.upsample(maps, 30), expected) and not calls
    torch.use_deterministic_algorithms(True)
    assert torch.allclose(stages.upsample(maps, 30), expected, atol=1e-6) and len(calls) == 1


def _cli_train(root, cache, out, *extra):
    sets = [x for item in FAST_TRAIN for x in ("--set", item)]
    return main(["train", "--config", "configs/demo.yaml", "--root", str(root), "--out", str(out),
                 "--cache-dir", str(cache), "--device", "cpu", "--quiet",
                 "--set", "data.train_categories=[bagel]", "--set", "data.limit_per_split=4",
                 "--set", "render.views=[[x, 0], [y, 30]]", "--set", "render.image_size=112",
                 *sets, *extra])  # fmt: skip


def _heads(run):
    return load_file(run / "head.safetensors")


def test_deterministic_cpu_training_and_resume_are_bitwise(restore_determinism, synth_mvtec,
                                                           feature_cache, tmp_path, monkeypatch):
    """--deterministic on the CPU: a run interrupted in stage 2 then resumed ends with the head of
    an uninterrupted run bit for bit (what the README promises); the run records the switch."""
    from align3d_ad.training import trainer

    assert _cli_train(synth_mvtec, feature_cache, tmp_path / "a", "--deterministic") == 0
    assert torch.are_deterministic_algorithms_enabled()
    assert load_config(tmp_path / "a" / "config.yaml").deterministic is True
    real_epoch = trainer.stage2_epoch
    interrupted = stops_at_call(real_epoch)  # in the second stage-2 epoch
    monkeypatch.setattr(trainer, "stage2_epoch", interrupted)
    assert _cli_train(synth_mvtec, feature_cache, tmp_path / "c", "--deterministic") == 130
    monkeypatch.setattr(trainer, "stage2_epoch", real_epoch)
    assert _cli_train(synth_mvtec, feature_cache, tmp_path / "c", "--deterministic", "--resume") == 0
    a, c = _heads(tmp_path / "a"), _heads(tmp_path / "c")
    assert a.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], c[key]), key


def test_test_and_predict_take_deterministic(restore_determinism, trained_run, synth_mvtec, tmp_path):
    torch.use_deterministic_algorithms(False)
    cloud = next((synth_mvtec / "cookie" / "test" / "crack" / "xyz").glob("*.tiff"))
    assert main(["predict", "--checkpoint", str(trained_run), str(cloud), "--out",
                 str(tmp_path / "p"), "--device", "cpu", "--quiet", "--deterministic"]) == 0  # fmt: skip
    assert torch.are_deterministic_algorithms_enabled()


# ---------------------------------------------------------------- 5. fp16 training
@pytest.mark.parametrize("precision, variant, epochs, refused", [
    ("fp16", "align3d", 2, True), ("fp16", "pointad", 2, True), ("bf16", "align3d", 2, False),
    ("fp32", "align3d", 2, False), ("fp16", "clip-zero-shot", 2, False), ("fp16", "align3d", 0, False),
])  # fmt: skip
def test_fp16_training_of_the_prompts_is_refused(precision, variant, epochs, refused):
    config = load_config(None, [f"backbone.precision={precision}", f"method.variant={variant}",
                                f"train.stage2_epochs={epochs}"])  # fmt: skip
    if refused:
        with pytest.raises(ConfigError, match="backbone.precision=fp16 cannot train stage 2"):
            stages.check_training_precision(config)
    else:
        stages.check_training_precision(config)


def test_cli_refuses_fp16_training_in_one_line_before_loading_anything(capsys, synth_mvtec,
                                                                       feature_cache, tmp_path,
                                                                       monkeypatch):
    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was loaded")

    monkeypatch.setattr("align3d_ad.training.trainer.load_backbone", no_backbone)
    code = _cli_train(synth_mvtec, feature_cache, tmp_path / "r", "--set", "backbone.precision=fp16")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USER_ERROR and len(err) == 1
    assert "backbone.precision=fp16 cannot train stage 2" in err[0] and "bf16 or fp32" in err[0]


# ---------------------------------------------------------------- on a real GPU (gpu_check.sh)
@pytest.mark.cuda
def test_cuda_prompt_init_equals_the_cpus():
    encoder = PromptableTextEncoder(load_backbone(BackboneSpec.tiny(), device="cuda"))
    torch.manual_seed(3)
    on_gpu = PromptLearner(encoder)
    encoder.to("cpu")
    torch.manual_seed(3)
    on_cpu = PromptLearner(encoder)
    for key, value in on_cpu.state_dict().items():
        assert torch.equal(on_gpu.state_dict()[key].cpu(), value), key


@pytest.mark.cuda
def test_cuda_deterministic_upsampling_backward_is_bitwise(restore_determinism):
    set_deterministic()
    x = torch.rand(18, 2, 24, 24, device="cuda", requires_grad=True)
    grad = torch.rand(18, 2, 336, 336, device="cuda")
    grads = [torch.autograd.grad(upsample_bilinear(x, (336, 336)), x, grad)[0] for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    with pytest.raises(RuntimeError, match="deterministic"):  # what it replaces
        F.interpolate(x, size=(336, 336), mode="bilinear", align_corners=False).sum().backward()
