"""The on-disk feature cache: hits, keys, corruption, concurrent writers."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time

import numpy as np
import pytest
import torch

from align3d_ad.backbone import FeatureCache
from align3d_ad.errors import ConfigError

PARTS = {
    "sample": "ab12", "views": [[-45.0, 0.0], [15.0, 30.0]], "image_size": 224, "splat": {"radius": 1.5},
    "mode": "geometry", "backbone": "tiny-clip", "weights": "random-init:tiny-clip:seed0", "layers": [4],
    "vv_start": 1, "precision": "fp32", "matmul": "highest,cuda-tf32=False,cudnn-tf32=False",
    "device_type": "cpu",
}


def _arrays(seed: int = 0) -> dict[str, object]:
    gen = np.random.default_rng(seed)
    return {
        "tokens": torch.from_numpy(gen.standard_normal((9, 1, 197, 64)).astype(np.float32)),
        "global": gen.standard_normal((9, 64)).astype(np.float32),
        "visible": gen.random((9, 50)) > 0.5,
    }


class Counter:
    def __init__(self, seed: int = 0) -> None:
        self.calls, self.seed = 0, seed

    def __call__(self):
        self.calls += 1
        return _arrays(self.seed)


def test_cache_second_call_reads_instead_of_computing(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = FeatureCache.key(**PARTS)
    first = cache.get_or_compute(key, compute)
    second = cache.get_or_compute(key, compute)
    assert compute.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    expected = _arrays()
    np.testing.assert_array_equal(second["global"], expected["global"].astype(np.float16))
    np.testing.assert_array_equal(second["tokens"], expected["tokens"].numpy().astype(np.float16))
    np.testing.assert_array_equal(second["visible"], expected["visible"])
    assert second["tokens"].dtype == np.float16 and second["visible"].dtype == bool
    assert isinstance(second["tokens"], np.memmap) and not second["tokens"].flags.writeable
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert cache.size_bytes() == sum(p.stat().st_size for p in files) > 9 * 197 * 64 * 2


def test_cache_key_is_canonical_and_changes_with_every_part():
    key = FeatureCache.key(**PARTS)
    reordered = dict(reversed(list(PARTS.items())))
    assert FeatureCache.key(**reordered) == key
    assert FeatureCache.key(**{**PARTS, "views": ((-45.0, 0.0), (15.0, 30.0))}) == key
    assert FeatureCache.key(**{**PARTS, "image_size": np.int64(224)}) == key
    changed = {
        "sample": "ab13", "views": [[-45.0, 0.0]], "image_size": 336, "splat": {"radius": 2.0},
        "mode": "colour", "backbone": "ViT-L-14-336-quickgelu", "weights": "x", "layers": [3, 4],
        "vv_start": 2, "precision": "bf16", "matmul": "high,cuda-tf32=True,cudnn-tf32=True",
        "device_type": "cuda",
    }
    keys = {FeatureCache.key(**{**PARTS, name: value}) for name, value in changed.items()}
    assert len(keys) == len(changed) and key not in keys
    with pytest.raises(ConfigError, match="JSON-like"):
        FeatureCache.key(obj=object())


def test_cache_changed_key_part_recomputes(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    cache.get_or_compute(FeatureCache.key(**PARTS), compute)
    cache.get_or_compute(FeatureCache.key(**{**PARTS, "mode": "colour"}), compute)
    assert compute.calls == 2


def test_cache_truncated_array_is_detected_and_recomputed(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = FeatureCache.key(**PARTS)
    cache.get_or_compute(key, compute)
    npy = cache.entry_dir(key) / "tokens.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    again = cache.get_or_compute(key, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(again["tokens"], _arrays()["tokens"].numpy().astype(np.float16))
    assert cache.get_or_compute(key, compute) is not None and compute.calls == 2


def test_cache_same_size_corruption_fails_the_checksum_and_is_recomputed(tmp_path, caplog):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = FeatureCache.key(**PARTS)
    cache.get_or_compute(key, compute)
    folder = cache.entry_dir(key)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert all(len(info["crc32"]) == 8 for info in manifest["arrays"].values())
    npy = folder / "tokens.npy"
    data = bytearray(npy.read_bytes())
    half = len(data) // 2
    data[half:] = bytes(len(data) - half)  # zero the second half: same size, valid header
    npy.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="align3d_ad.backbone.cache")
    again = cache.get_or_compute(key, compute)
    assert compute.calls == 2
    assert (cache.hits, cache.misses, cache.broken) == (0, 2, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and key in warnings[0] and "tokens.npy" in warnings[0]
    assert "checksum" in warnings[0]
    fresh = _arrays()
    np.testing.assert_array_equal(again["tokens"], fresh["tokens"].numpy().astype(np.float16))
    np.testing.assert_array_equal(again["global"], fresh["global"].astype(np.float16))
    # the entry was rewritten: the next read is a plain hit
    assert cache.get_or_compute(key, compute) is not None
    assert (compute.calls, cache.hits, cache.broken) == (2, 1, 1)


def test_cache_corrupt_or_missing_manifest_is_recomputed(tmp_path):
    cache, compute = FeatureCache(tmp_path), Counter()
    key = FeatureCache.key(**PARTS)
    cache.get_or_compute(key, compute)
    manifest = cache.entry_dir(key) / "manifest.json"
    manifest.write_text("{not json")
    cache.get_or_compute(key, compute)
    assert compute.calls == 2
    # an array whose header was rewritten with another shape but the same size is caught too
    info = json.loads(manifest.read_text())
    info["arrays"]["global"]["shape"] = [64, 9]
    manifest.write_text(json.dumps(info))
    cache.get_or_compute(key, compute)
    assert compute.calls == 3
    manifest.unlink()
    cache.get_or_compute(key, compute)
    assert compute.calls == 4


def test_cache_disabled_always_computes_with_the_same_dtypes(tmp_path):
    cache, compute = FeatureCache(None), Counter()
    key = FeatureCache.key(**PARTS)
    a = cache.get_or_compute(key, compute)
    cache.get_or_compute(key, compute)
    assert compute.calls == 2 and cache.size_bytes() == 0
    enabled = FeatureCache(tmp_path).get_or_compute(key, Counter())
    for name in a:
        assert a[name].dtype == enabled[name].dtype
        np.testing.assert_array_equal(a[name], enabled[name])


def test_cache_rejects_unsafe_names(tmp_path):
    with pytest.raises(ConfigError, match="names"):
        FeatureCache(tmp_path).get_or_compute(FeatureCache.key(a=1), lambda: {"../x": np.zeros(2)})


def _writer(root: str, key: str, barrier, seed: int) -> None:
    barrier.wait()

    def slow():
        time.sleep(0.2)  # both processes are inside compute at the same time
        return _arrays(0)

    FeatureCache(root).get_or_compute(key, slow)


def test_cache_concurrent_writers_leave_one_valid_entry(tmp_path):
    ctx = mp.get_context("fork")
    key = FeatureCache.key(**PARTS)
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), key, barrier, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    cache, compute = FeatureCache(tmp_path), Counter()
    got = cache.get_or_compute(key, compute)
    assert compute.calls == 0 and cache.hits == 1
    np.testing.assert_array_equal(got["global"], _arrays()["global"].astype(np.float16))
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == []
