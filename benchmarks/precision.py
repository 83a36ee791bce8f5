"""Scores of fp32 against bf16 autocast (``backbone.precision=amp-bf16``) on the synthetic benchmark.

Scores the test split of synthetic MVTec 3D-AD-format categories twice with the same head (a
trained checkpoint with ``--checkpoint``, else an untrained head) and backbone weights, once in
fp32 and once with the image encoder under bf16 autocast (the CUDA default, ``precision: auto``),
no feature cache, and prints the largest and mean absolute differences of the point and object
scores and both runs' metrics. bf16 autocast runs on CPUs too (slowly), so the figure exists
without a GPU; on CUDA it measures the path users get.

    python benchmarks/precision.py --device cpu --samples 6 --threads 2
    python benchmarks/precision.py --device cuda --samples 24 --backbone ViT-L-14-336-quickgelu
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
from untrained import untrained_detector

from align3d_ad.backbone import BackboneSpec, load_backbone
from align3d_ad.config import EvalConfig
from align3d_ad.evaluate.runner import evaluate_dataset
from align3d_ad.model.checkpoint import load_parts, make_encoder
from align3d_ad.model.detector import Detector
from align3d_ad.synth import generate_dataset


def _detector(args: argparse.Namespace, precision: str) -> Detector:
    if args.checkpoint is None:
        torch.manual_seed(0)  # the same untrained head for both precisions
        return untrained_detector(args.backbone, device=args.device, precision=precision)
    config, _, head = load_parts(args.checkpoint, device=args.device, use_cache=False)
    config = dataclasses.replace(
        config, backbone=dataclasses.replace(config.backbone, precision=precision, use_cache=False)
    )
    spec = BackboneSpec(model_name=config.backbone.model_name, pretrained=None, precision=precision)
    backbone = load_backbone(spec, device=args.device)
    return Detector(config, make_encoder(config, backbone), head)


def _scores(detector: Detector, root: Path, out: Path, args) -> tuple[dict, list, list]:
    points, objects = [], []

    def keep(sample, pred) -> None:
        points.append(pred.point_scores)
        objects.append(pred.object_score)

    metrics = evaluate_dataset(
        detector, "mvtec3d", root, out_dir=out, categories=args.categories,
        eval_config=EvalConfig(workers=0), select=lambda refs: refs[: args.samples],
        on_prediction=keep,
    )  # fmt: skip
    return metrics, points, objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-clip")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--categories", nargs="+", default=["cookie", "dowel"])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_dataset(root, format="mvtec3d", categories=args.categories, small=True)
        runs = {p: _scores(_detector(args, p), root, Path(tmp) / p, args)
                for p in ("fp32", "amp-bf16")}  # fmt: skip
    (m32, p32, o32), (m16, p16, o16) = runs["fp32"], runs["amp-bf16"]
    dp = np.abs(np.concatenate(p32) - np.concatenate(p16))
    do = np.abs(np.array(o32) - np.array(o16))
    span = float(np.ptp(np.concatenate(p32)))
    print(f"{args.device}, {len(o32)} objects, {dp.size} points")
    print(f"point scores: max |diff| {dp.max():.2e}, mean {dp.mean():.2e} "
          f"(fp32 scores span {span:.3f})")  # fmt: skip
    print(f"object scores: max |diff| {do.max():.2e}, mean {do.mean():.2e}")
    for category in m32:
        a, b = m32[category], m16[category]
        print(f"{category}: O-AUROC {a['object']['o_auroc']:.4f} / {b['object']['o_auroc']:.4f}, "
              f"P-AUROC {a['foreground']['p_auroc']:.4f} / {b['foreground']['p_auroc']:.4f}, "
              f"AUPRO {a['foreground']['aupro']:.4f} / {b['foreground']['aupro']:.4f} "
              "(fp32 / amp-bf16)")  # fmt: skip


if __name__ == "__main__":
    main()
