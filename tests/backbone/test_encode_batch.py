"""One backbone run for a batch's cache misses, features kept on the device, background cache
writes, and the ``auto`` / ``amp-bf16`` precisions (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from align3d_ad.backbone import BackboneSpec, FeatureCache, ViewEncoder, load_backbone
from align3d_ad.backbone.encode import stack_features
from align3d_ad.backbone.loader import resolve_precision
from align3d_ad.config import load_config
from align3d_ad.data.sample import PointCloudSample
from align3d_ad.errors import ConfigError
from align3d_ad.render import RenderSettings, get_view_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def _samples(n: int = 3) -> list[PointCloudSample]:
    out = []
    for k in range(n):
        gen = np.random.default_rng(k)
        points = gen.standard_normal((2000 + 300 * k, 3))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        out.append(PointCloudSample(points * [1.0, 0.8, 0.5 + 0.1 * k], sample_id=f"s{k}"))
    return out


def _encoder(backbone, cache: FeatureCache) -> ViewEncoder:
    settings = RenderSettings(image_size=backbone.image_size)
    return ViewEncoder(backbone, get_view_preset("mvtec3d"), settings, cache=cache, batch_size=7)


@pytest.fixture(scope="module")
def tiny():
    return load_backbone(BackboneSpec.tiny())


def test_batched_misses_equal_one_sample_at_a_time(tiny):
    samples = _samples()
    batched = _encoder(tiny, FeatureCache(None))
    together = batched.encode(samples)
    assert batched.backbone_calls == 3  # samples encoded, in one run of 27 views (7 per pass)
    for sample, feats in zip(samples, together):
        alone = _encoder(tiny, FeatureCache(None)).encode([sample])[0]
        assert feats.tokens.dtype == torch.float16 and feats.tokens.shape == alone.tokens.shape
        np.testing.assert_allclose(np.asarray(feats.tokens, np.float32),
                                   np.asarray(alone.tokens, np.float32), atol=2e-3)  # fmt: skip


def test_fresh_features_equal_what_the_cache_gives_back(tmp_path, tiny):
    samples = _samples(2)
    cache = FeatureCache(tmp_path)
    fresh = _encoder(tiny, cache).encode(samples)  # device tensors, written in the background
    assert all(isinstance(f.tokens, torch.Tensor) for f in fresh)
    cache.flush()
    again = _encoder(tiny, FeatureCache(tmp_path))
    read = again.encode(samples)
    assert again.backbone_calls == 0 and again.cache.hits == 2
    assert all(isinstance(f.tokens, np.ndarray) for f in read)  # memory maps of the entries
    g_fresh, t_fresh = stack_features(fresh, "cpu")
    g_read, t_read = stack_features(read, "cpu")
    assert torch.equal(t_fresh, t_read) and torch.equal(g_fresh, g_read)  # bitwise
    assert t_read.dtype == torch.float32


def test_a_pending_entry_is_answered_from_memory(tmp_path):
    cache = FeatureCache(tmp_path)
    key = FeatureCache.key(sample="a")
    tokens = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    cache._pending[key] = {"tokens": tokens}  # as while the writer thread works on it
    assert cache.lookup(key)["tokens"] is tokens and cache.hits == 1


def test_a_failed_background_write_is_raised_by_flush(tmp_path):
    (tmp_path / "cache").write_text("a file, not a folder")
    cache = FeatureCache(tmp_path / "cache")
    cache.put(FeatureCache.key(sample="a"), {"tokens": torch.zeros(2, 3)})
    with pytest.raises(OSError):
        cache.flush()
    cache.flush()  # raised once


def test_host_features_for_long_lived_items(tiny):
    (feats,) = _encoder(tiny, FeatureCache(None)).encode(_samples(1), host=True)
    assert isinstance(feats.tokens, np.ndarray) and feats.tokens.dtype == np.float16


def test_auto_precision_is_bf16_autocast_on_cuda_only(tiny):
    assert resolve_precision("auto", torch.device("cuda", 0)) == "amp-bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"
    assert tiny.spec.precision == "auto" and tiny.precision == "fp32"
    assert tiny.key_parts()["precision"] == "fp32" and tiny.autocast_dtype is None
    assert load_config(None).backbone.precision == "auto"
    with pytest.raises(ConfigError, match="precision"):
        load_config(None, ["backbone.precision=bf17"])


def test_amp_bf16_autocasts_the_image_encoder_only():
    fp32 = load_backbone(BackboneSpec.tiny())
    amp = load_backbone(BackboneSpec.tiny(precision="amp-bf16"))
    assert amp.dtype == torch.float32 and amp.autocast_dtype == torch.bfloat16
    assert amp.key_parts()["precision"] == "amp-bf16" != fp32.key_parts()["precision"]
    sample = _samples(1)
    a = np.asarray(_encoder(fp32, FeatureCache(None)).encode(sample)[0].tokens, np.float32)
    b = np.asarray(_encoder(amp, FeatureCache(None)).encode(sample)[0].tokens, np.float32)
    assert not np.array_equal(a, b)  # bf16 arithmetic really ran
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() > 0.98
