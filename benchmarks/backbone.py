"""Backbone throughput: views/s of the V-V feature extractor, and feature-cache read speed.

Random weights (``pretrained=None``), so it runs offline; speed does not depend on the weight
values. Prints a markdown table. Example (CPU, a couple of batches for ViT-L)::

    python benchmarks/backbone.py --models tiny-clip ViT-B-16 ViT-L-14-336 --iters 2 --batch 2

CUDA rows are added when a GPU is present (``--devices cpu cuda`` to force the choice).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from align3d_ad.backbone import BackboneSpec, FeatureCache, ImageFeatureExtractor, load_backbone

#: Views per sample (METHOD.md §2) for the cache benchmark's entry size.
VIEWS = 9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _views_per_s(fn, images: torch.Tensor, iters: int, device: torch.device) -> float:
    fn(images)  # warm-up (allocations, kernels)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn(images)
    _sync(device)
    return iters * images.shape[0] / (time.perf_counter() - start)


def bench_model(name: str, device: str, precision: str, batch: int, iters: int) -> dict:
    """Views/s of the V-V extractor and of plain ``encode_image`` for one configuration."""
    backbone = load_backbone(BackboneSpec(model_name=name, pretrained=None, precision=precision), device=device)
    extractor = ImageFeatureExtractor(backbone)
    size = backbone.image_size
    images = torch.rand(batch, 3, size, size, device=backbone.device)
    mean = torch.tensor(backbone.mean, device=backbone.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=backbone.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def plain(x: torch.Tensor) -> torch.Tensor:
        return backbone.clip.encode_image(((x - mean) / std).to(backbone.dtype))

    vv = _views_per_s(extractor, images, iters, backbone.device)
    base = _views_per_s(plain, images, iters, backbone.device)
    return {
        "model": f"{name} @{size}", "device": str(backbone.device), "precision": precision,
        "batch": batch, "vv": vv, "plain": base,
    }


def bench_cache(entries: int, tokens: int, dim: int) -> dict:
    """Write ``entries`` ViT-L-sized entries, then read them all back from the cache (warm)."""
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(Path(root))
        gen = np.random.default_rng(0)
        arrays = {
            "tokens": gen.standard_normal((VIEWS, 1, tokens, dim)).astype(np.float32),
            "global": gen.standard_normal((VIEWS, dim)).astype(np.float32),
        }
        keys = [FeatureCache.key(sample=i) for i in range(entries)]
        start = time.perf_counter()
        for key in keys:
            cache.get_or_compute(key, lambda: arrays)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        total = 0.0
        for key in keys:
            got = cache.get_or_compute(key, lambda: arrays)
            total += float(np.asarray(got["tokens"], dtype=np.float32).sum())  # touch every byte
        read_s = time.perf_counter() - start
        size_mb = cache.size_bytes() / 2**20
    return {
        "entries": entries, "mb": size_mb, "write_s": write_s, "read_s": read_s,
        "samples_per_s": entries / read_s, "mb_per_s": size_mb / read_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-clip", "ViT-B-16", "ViT-L-14-336"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda if present)")
    parser.add_argument("--batch", type=int, default=2, help="views per forward on CPU")
    parser.add_argument("--cuda-batch", type=int, default=18, help="views per forward on CUDA")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--cache-entries", type=int, default=20)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    print("| backbone | device | precision | batch | V-V extractor views/s | encode_image views/s |")
    print("|---|---|---|---|---|---|")
    for device in devices:
        batch = args.cuda_batch if device.startswith("cuda") else args.batch
        for name in args.models:
            for precision in args.precisions:
                iters = args.iters if name != "tiny-clip" else max(args.iters, 10)
                row = bench_model(name, device, precision, batch, iters)
                print(
                    f"| {row['model']} | {row['device']} | {precision} | {batch} | "
                    f"{row['vv']:.2f} | {row['plain']:.2f} |", flush=True,
                )
    c = bench_cache(args.cache_entries, tokens=577, dim=768)
    print(
        f"\nFeature cache (ViT-L-sized entries: {VIEWS} views x 577 tokens x 768, fp16; warm page "
        f"cache): {c['entries']} entries, {c['mb']:.0f} MB; write {c['write_s']:.2f} s; read "
        f"{c['samples_per_s']:.0f} samples/s = {c['mb_per_s']:.0f} MB/s"
    )


if __name__ == "__main__":
    main()
