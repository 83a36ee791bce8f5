"""Cost of the feature cache's checksum: a cached read with and without verifying CRC-32.

Every cache entry stores the CRC-32 of each file; a read recomputes it (``backbone/cache.py``).
This writes ViT-L-sized entries (9 views x 577 tokens x 768, fp16), then reads them back from a
warm page cache the way training and ``test`` do (``get_or_compute`` hit, then every value as
float32, as ``stack_features`` does), alternately with the verification and with it replaced by a
lookup of the stored value. A cached pass in training, ``test`` or ``predict`` also renders each
sample (GT masks, back-projection): the time to render a ~50k-point sample's 9 views (geometry and
colour) at 336 px is measured too, and the pass compared as render + read. Each part is the median
over the rounds, so noise in the render time cannot pass for checksum cost. Also times BLAKE2b over
the same bytes, for comparison.

    python benchmarks/cache_checksum.py --entries 20 --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from align3d_ad.backbone import FeatureCache
from align3d_ad.backbone import cache as cache_module
from align3d_ad.data.sample import PointCloudSample
from align3d_ad.render import RenderSettings, get_view_preset, render_samples

VIEWS, TOKENS, DIM = 9, 577, 768


def _sample(points: int = 50_000) -> PointCloudSample:
    """An ellipsoid with colours (timing only)."""
    gen = np.random.default_rng(1)
    xyz = gen.standard_normal((points, 3))
    xyz = xyz / np.linalg.norm(xyz, axis=1, keepdims=True) * [1.0, 0.8, 0.5]
    return PointCloudSample(xyz, colors=gen.random((points, 3)), sample_id="bench")


def _read_all(cache: FeatureCache, keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        got = cache.get_or_compute(key, lambda: {})
        np.asarray(got["tokens"], dtype=np.float32)
        np.asarray(got["global"], dtype=np.float32)
    return time.perf_counter() - start


def _blake2b_all(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        with path.open("rb") as fh:
            hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--layers", type=int, default=1, help="V-V layers per entry")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--render-entries", type=int, default=2, help="renders timed per round")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sample, preset, settings = _sample(), get_view_preset("mvtec3d"), RenderSettings(image_size=336)

    def render() -> None:
        render_samples([sample], preset, settings, device="cpu", with_labels=False)
    gen = np.random.default_rng(0)
    arrays = {
        "tokens": gen.standard_normal((VIEWS, args.layers, TOKENS, DIM)).astype(np.float32),
        "global": gen.standard_normal((VIEWS, DIM)).astype(np.float32),
    }
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(Path(root))
        keys = [FeatureCache.key(sample=i) for i in range(args.entries)]
        for key in keys:
            cache.get_or_compute(key, lambda: arrays)
        files = sorted(Path(root).rglob("*.npy"))
        stored = {str(p): cache_module.file_crc32(p) for p in files}
        _read_all(cache, keys)  # warm the page cache
        times: dict[str, list[float]] = {k: [] for k in ("on", "off", "b2", "render")}
        for _ in range(args.rounds):
            times["on"].append(_read_all(cache, keys) / len(keys))
            with mock.patch.object(cache_module, "file_crc32", lambda p: stored[str(p)]):
                times["off"].append(_read_all(cache, keys) / len(keys))
            times["b2"].append(_blake2b_all(files) / len(keys))
            start = time.perf_counter()
            for _ in range(args.render_entries):
                render()
            times["render"].append((time.perf_counter() - start) / args.render_entries)
        mb = sum(p.stat().st_size for p in files) / 2**20
    t = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(f"{args.entries} entries, {mb:.0f} MB, median of {args.rounds} rounds (warm page cache)")
    print("| pass (per entry) | without checksum (ms) | CRC-32 verified (ms) | ratio |")
    print("|---|---|---|---|")
    print(f"| cached read | {t['off']:.1f} | {t['on']:.1f} | {t['on'] / t['off']:.2f} |")
    r_off, r_on = t["render"] + t["off"], t["render"] + t["on"]
    print(f"| render + cached read | {r_off:.1f} | {r_on:.1f} | {r_on / r_off:.2f} |")
    print(f"\nBLAKE2b of the same bytes alone: {t['b2']:.1f} ms per entry "
          f"({t['b2'] / t['off']:.2f} x the unverified read)")

if __name__ == "__main__":
    main()
