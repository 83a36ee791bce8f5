"""Render -> encode -> cache: checksummed entries and precision-aware keys (issues 12.11, 17.4)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from align3d_ad.backbone import BackboneSpec, FeatureCache, ViewEncoder, load_backbone
from align3d_ad.backbone.numerics import FULL_FP32, matmul_mode
from align3d_ad.data.sample import PointCloudSample
from align3d_ad.render import RenderSettings, get_view_preset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tf32_flags():
    """Restore torch's process-wide float32 matmul / cuDNN flags after the test."""
    saved = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cuda.matmul.allow_tf32 = saved[1]
    torch.backends.cudnn.allow_tf32 = saved[2]


def _sample() -> PointCloudSample:
    gen = np.random.default_rng(0)
    points = gen.standard_normal((3000, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return PointCloudSample(points * [1.0, 0.8, 0.5], category="blob", sample_id="train/good/000")


def _encoder(backbone, cache: FeatureCache) -> ViewEncoder:
    settings = RenderSettings(image_size=backbone.image_size)
    return ViewEncoder(backbone, get_view_preset("mvtec3d"), settings, cache=cache)


def test_zeroed_half_of_cached_tokens_is_caught_and_recomputed(tmp_path, caplog, tf32_flags):
    backbone = load_backbone(BackboneSpec.tiny())
    sample = _sample()
    fresh = _encoder(backbone, FeatureCache(None)).encode([sample])[0]
    cache = FeatureCache(tmp_path)
    encoder = _encoder(backbone, cache)
    encoder.encode([sample])
    cache.flush()  # the entry is written in the background
    tokens = cache.entry_dir(encoder.key(sample, "geometry")) / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    tokens.write_bytes(bytes(data))
    # the damage is real: read without the checksum, the tokens differ from the fresh ones
    assert not np.array_equal(np.load(tokens), fresh.tokens)
    caplog.set_level(logging.WARNING, logger="align3d_ad.backbone.cache")
    again = encoder.encode([sample])[0]
    np.testing.assert_array_equal(again.tokens, fresh.tokens)
    np.testing.assert_array_equal(again.global_, fresh.global_)
    assert encoder.backbone_calls == 2
    assert (cache.hits, cache.misses, cache.broken) == (0, 2, 1)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(tokens.parent) in warning and "tokens.npy does not match its checksum" in warning
    cache.flush()
    np.testing.assert_array_equal(np.load(tokens), fresh.tokens)  # rewritten on disk


def test_fp32_load_turns_tf32_off(tf32_flags):
    torch.set_float32_matmul_precision("high")  # what a user (or another library) may have set
    torch.backends.cudnn.allow_tf32 = True
    assert matmul_mode() != FULL_FP32
    load_backbone(BackboneSpec.tiny())
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
    assert matmul_mode() == FULL_FP32


def test_reduced_precision_load_leaves_the_flags_alone(tf32_flags):
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    load_backbone(BackboneSpec.tiny(precision="bf16"))
    assert torch.get_float32_matmul_precision() == "high"
    assert torch.backends.cudnn.allow_tf32 is True


def test_cache_key_differs_with_precision_and_matmul_mode(tf32_flags):
    sample = _sample()
    fp32 = load_backbone(BackboneSpec.tiny())
    bf16 = load_backbone(BackboneSpec.tiny(precision="bf16"))
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    key_fp32 = _encoder(fp32, FeatureCache(None)).key(sample, "geometry")
    assert fp32.key_parts()["precision"] == "fp32" and fp32.key_parts()["device_type"] == "cpu"
    assert fp32.key_parts()["matmul"] == FULL_FP32
    assert _encoder(bf16, FeatureCache(None)).key(sample, "geometry") != key_fp32
    torch.backends.cudnn.allow_tf32 = True  # TF32 convolutions: another mode, another key
    assert fp32.key_parts()["matmul"] == "highest,cuda-tf32=False,cudnn-tf32=True"
    key_tf32_conv = _encoder(fp32, FeatureCache(None)).key(sample, "geometry")
    torch.set_float32_matmul_precision("high")
    key_tf32_both = _encoder(fp32, FeatureCache(None)).key(sample, "geometry")
    assert len({key_fp32, key_tf32_conv, key_tf32_both}) == 3
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    assert _encoder(fp32, FeatureCache(None)).key(sample, "geometry") == key_fp32
