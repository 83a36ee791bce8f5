"""Loading backbone weights: TorchScript, state dicts, safetensors, guards and fast failures."""

from __future__ import annotations

import copy
import time
import warnings

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from align3d_ad.backbone import (
    TINY_MODEL_CFG,
    BackboneEntry,
    BackboneSpec,
    ImageFeatureExtractor,
    backbone_info,
    file_fingerprint,
    find_cached_weights,
    is_torchscript_archive,
    load_backbone,
    parameter_fingerprint,
    register_backbone,
)
from align3d_ad.backbone.weights import check_reference_sha256
from align3d_ad.errors import CheckpointMismatchError, ConfigError, WeightsNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def source():
    """A tiny model with seed 7 (not the default 0), so features prove the weights were loaded."""
    return load_backbone(BackboneSpec.tiny(seed=7))


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory, source):
    """A traced TorchScript archive with OpenAI CLIP's module and state-dict structure.

    OpenAI's archives keep the causal mask as a constant, not a buffer: do the same.
    """
    clip = copy.deepcopy(source.clip)
    mask = clip.attn_mask
    del clip._buffers["attn_mask"]
    clip.attn_mask = mask
    size = source.image_size
    image, text = torch.ones(1, 3, size, size), torch.zeros(1, 77, dtype=torch.int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript deprecation warnings
        traced = torch.jit.trace_module(
            clip,
            inputs={"forward": (image, text), "encode_image": (image,), "encode_text": (text,)},
            check_trace=False,
        )
        assert "attn_mask" not in traced.state_dict()
        path = tmp_path_factory.mktemp("jit") / "ViT-tiny.pt"
        torch.jit.save(traced, str(path))
    return path


def _features(backbone, images):
    return ImageFeatureExtractor(backbone)(images)


def test_load_torchscript_archive_matches_source_and_open_clip_loader(source, images, torchscript_file):
    assert is_torchscript_archive(torchscript_file)
    loaded = load_backbone(BackboneSpec.tiny(weights=str(torchscript_file)))
    assert not loaded.is_random
    # the fingerprint is the weights' content: the archive and the state dict it was made from agree
    assert loaded.fingerprint == parameter_fingerprint(source.clip)
    assert loaded.fingerprint.startswith("params-sha256:")
    assert loaded.source == f"file {torchscript_file.name}"
    ref, got = _features(source, images), _features(loaded, images)
    torch.testing.assert_close(got.tokens, ref.tokens, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.global_, ref.global_, atol=1e-6, rtol=0)
    # open_clip's own OpenAI-archive loader infers the same architecture from the file (it rounds
    # the weights through fp16 as OpenAI's release does, hence the tolerance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        openai_model = open_clip.load_openai_model(str(torchscript_file), precision="fp32", device="cpu")
    x = (images - torch.tensor(loaded.mean).view(1, 3, 1, 1)) / torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(openai_model.encode_image(x, normalize=True), got.global_, atol=1e-3, rtol=0)


def test_state_dict_wrapper_and_safetensors_give_identical_features(source, images, tmp_path):
    state = {k: v.clone().contiguous() for k, v in source.clip.state_dict().items()}
    plain, wrapped, safe = tmp_path / "w.pt", tmp_path / "w.pth", tmp_path / "w.safetensors"
    torch.save(state, plain)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    save_file(state, str(safe))
    ref = _features(source, images)
    fingerprints = set()
    for path in (plain, wrapped, safe):
        assert not is_torchscript_archive(path)
        loaded = load_backbone(BackboneSpec.tiny(weights=str(path)))
        fingerprints.add(loaded.fingerprint)
        got = _features(loaded, images)
        torch.testing.assert_close(got.tokens, ref.tokens, atol=0, rtol=0)
        torch.testing.assert_close(got.global_, ref.global_, atol=0, rtol=0)
    # one set of weights in three files: one fingerprint, so checkpoints and cached features
    # made with one file are accepted with the others
    assert len(fingerprints) == 1


def test_parameter_fingerprint_changes_with_any_weight(source):
    model = copy.deepcopy(source.clip)
    first = parameter_fingerprint(model)
    assert parameter_fingerprint(model) == first
    with torch.no_grad():
        model.visual.proj[0, 0] += 1e-3  # one value of one tensor (sampled: index 0)
    assert parameter_fingerprint(model) != first


def test_quickgelu_guard_refuses_openai_tag_on_gelu_model():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="ViT-L-14-336-quickgelu"):
        load_backbone(BackboneSpec(model_name="ViT-L-14-336", pretrained="openai"))
    assert time.perf_counter() - start < 1.0


def test_quickgelu_guard_refuses_torchscript_on_gelu_model(torchscript_file):
    gelu_cfg = {**TINY_MODEL_CFG, "quick_gelu": False}
    register_backbone(
        BackboneEntry("tiny-clip-gelu", None, False, 224, 16, random_init=True, model_cfg=gelu_cfg),
        overwrite=True,
    )
    spec = BackboneSpec(model_name="tiny-clip-gelu", pretrained=None, weights=str(torchscript_file))
    with pytest.raises(ConfigError, match="QuickGELU"):
        load_backbone(spec)


def test_missing_tag_weights_offline_fail_fast_naming_weights_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="--weights PATH"):
        load_backbone(BackboneSpec(), cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "ViT-L-14-336px.pt"
    with pytest.raises(WeightsNotFoundError, match="ViT-L-14-336px.pt"):
        load_backbone(BackboneSpec(weights=str(missing)))


def test_mismatching_or_unreadable_weights_raise(source, tmp_path):
    state = dict(source.clip.state_dict())
    state.pop("visual.proj")
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    with pytest.raises(CheckpointMismatchError, match="partial.pt"):
        load_backbone(BackboneSpec.tiny(weights=str(partial)))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CheckpointMismatchError, match="garbage.bin"):
        load_backbone(BackboneSpec.tiny(weights=str(garbage)))


def test_file_fingerprint_changes_with_content_at_head_and_tail(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(9 * 1024 * 1024)
    big.write_bytes(bytes(data))
    first = file_fingerprint(big)
    assert file_fingerprint(big) == first
    data[-1] = 1
    big.write_bytes(bytes(data))
    assert file_fingerprint(big) != first
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    other = tmp_path / "other.bin"
    other.write_bytes(b"abd")
    assert file_fingerprint(small) != file_fingerprint(other)


def test_reference_sha256_mismatch_warns(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_reference_sha256(path, good, name="x")
    with pytest.warns(UserWarning, match="reference file"):
        assert not check_reference_sha256(path, "0" * 64, name="x")


def _fake_hf_cache(root, repo_id, filename):
    folder = root / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(b"weights")
    return snap / filename


def test_find_cached_weights_reads_hf_cache_and_url_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = tmp_path / "hf"
    expected = _fake_hf_cache(hf, "timm/vit_large_patch14_clip_336.openai", "open_clip_model.safetensors")
    assert find_cached_weights("ViT-L-14-336-quickgelu", "openai", cache_dir=hf) == expected
    info = backbone_info(cache_dir=hf)
    assert info["weights"]["available"] and info["weights"]["source"] == "cache"
    url_cache = tmp_path / "clip"
    url_cache.mkdir()
    (url_cache / "ViT-L-14-336px.pt").write_bytes(b"jit")
    assert find_cached_weights("ViT-L-14-336-quickgelu", "openai", cache_dir=url_cache) == (
        url_cache / "ViT-L-14-336px.pt"
    )
    empty = tmp_path / "empty"
    assert find_cached_weights("ViT-L-14-336-quickgelu", "openai", cache_dir=empty) is None
    info = backbone_info(cache_dir=empty)
    assert not info["weights"]["available"] and "--weights PATH" in info["weights"]["detail"]
    assert info["backbone"]["name"] == "ViT-L-14-336-quickgelu"
    assert set(info["versions"]) == {"python", "torch", "open_clip"}
    assert info["devices"][0] == "cpu"
