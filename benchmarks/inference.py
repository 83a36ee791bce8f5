"""Inference cost per sample, split into its steps, and the ratio to the backbone forward alone.

The backbone is the physical limit of this design (DESIGN.md "Performance principles"): rendering,
back-projection, scoring and smoothing should add little on top of it. This script scores synthetic
MVTec3D-AD-format samples with an untrained head (timing only, random backbone weights) and prints
one markdown row: seconds per sample for load, prepare (background removal), render, backbone,
scoring + back-projection, smoothing, the whole pipeline (``Detector.predict`` on a loaded sample:
prepare, render, backbone, scoring, smoothing), and pipeline / backbone.

    python benchmarks/inference.py --backbone tiny-clip --samples 8
    python benchmarks/inference.py --backbone ViT-B-16-quickgelu --samples 4 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from untrained import untrained_detector

from align3d_ad.data import get_dataset, prepare_sample
from align3d_ad.render import back_project
from align3d_ad.synth import generate_dataset


class Clock:
    """Accumulates wall time per named step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, fn, *args, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.total[name] += time.perf_counter() - start
        return out


def run(args: argparse.Namespace, root: Path) -> dict[str, float]:
    detector = untrained_detector(args.backbone, device=args.device)
    config, encoder, head, backbone = detector.config, detector.encoder, detector.head, detector.backbone
    reader = get_dataset("mvtec3d", root)
    refs = reader.refs(args.category, "test")[: args.samples]
    clock = Clock(backbone.device)
    with torch.no_grad():
        for ref in refs:
            sample = clock("load", reader.load, ref)
            prep = clock("prepare", prepare_sample, sample, config.data)
            rendering = clock("render", encoder.render, [prep.sample])
            images = rendering.images[0]
            feats = clock("backbone", encoder.extractor, images, batch_size=encoder.batch_size)
            g, t = feats.global_[None].float(), feats.tokens[None].float()

            def score(g=g, t=t, rendering=rendering):
                outs = head(g, t, grid=encoder.grid_size, texts=detector._texts)
                return {b: back_project(o.patch_probs, rendering)[0] for b, o in outs.items()}

            maps = clock("score+backproject", score)
            stacked = torch.stack([m[:, 1] for m in maps.values()], dim=1)
            clock("smooth", detector._smooth, prep, stacked, rendering, 0)
            clock("pipeline", detector.predict, sample)  # the same steps end to end (no cache)
    n = len(refs)
    return {k: v / n for k, v in clock.total.items()} | {"points": float(prep.sample.num_points)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-clip")
    parser.add_argument("--category", default="gear")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_dataset(root, format="mvtec3d", categories=[args.category])
        t = run(args, root)
    steps = ["load", "prepare", "render", "backbone", "score+backproject", "smooth", "pipeline"]
    print("| backbone | device | points | " + " | ".join(f"{s} (s)" for s in steps)
          + " | pipeline / backbone | (pipeline - prepare) / backbone |")  # fmt: skip
    print("|---" * (len(steps) + 5) + "|")
    core = t["pipeline"] - t["prepare"]
    print(f"| {args.backbone} | {args.device} | {int(t['points'])} | "
          + " | ".join(f"{t[s]:.3f}" for s in steps)
          + f" | {t['pipeline'] / t['backbone']:.2f} | {core / t['backbone']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
