"""Training cost: one feature-extraction pass vs one epoch of each stage on the cached features.

DESIGN.md "Performance principles": the image encoder is frozen, so both stages run on cached
features and an epoch must cost a small fraction of one extraction pass. This script writes a
synthetic MVTec3D-AD-format category, trains on it with random backbone weights (timing only),
and prints the ratios as a markdown table.

    python benchmarks/training.py --backbone tiny-clip
    python benchmarks/training.py --backbone ViT-B-16-quickgelu --samples 8 --stage1-epochs 3
    python benchmarks/training.py --backbone ViT-L-14-336-quickgelu --samples 4 --stage2-batch-size 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from align3d_ad.backbone import BackboneSpec, load_backbone
from align3d_ad.config import load_config
from align3d_ad.synth import generate_dataset
from align3d_ad.training import train_model
from align3d_ad.training.trainer import load_training_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-clip")
    parser.add_argument("--category", default="gear")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default all)")
    parser.add_argument("--stage1-epochs", type=int, default=5)
    parser.add_argument("--stage2-epochs", type=int, default=3)
    parser.add_argument("--stage1-batch-size", type=int, default=None, help="default: config's (4)")
    parser.add_argument("--stage2-batch-size", type=int, default=None,
                        help="default: the demo config's 2 (the reference's is 4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "data", format="mvtec3d", categories=[args.category])
        overrides = [
            f"data.root={tmp / 'data'}", f"data.train_categories=[{args.category}]",
            f"backbone.model_name={args.backbone}", "backbone.pretrained=null",
            f"backbone.cache_dir={tmp / 'cache'}", f"device={args.device}",
            f"train.stage1_epochs={args.stage1_epochs}", "train.stage1_scr_epochs=1",
            f"train.stage2_epochs={args.stage2_epochs}", "train.stage2_dpca_epochs=1",
        ]  # fmt: skip
        if args.samples:
            overrides.append(f"data.limit_per_split={args.samples}")
        for stage in (1, 2):
            size = getattr(args, f"stage{stage}_batch_size")
            if size:
                overrides.append(f"train.stage{stage}_batch_size={size}")
        config = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml", overrides)
        backbone = load_backbone(BackboneSpec(model_name=args.backbone, pretrained=None),
                                 device=args.device)  # fmt: skip
        samples = load_training_samples(config)
        (tmp / "run").mkdir()
        first = train_model(config, tmp / "run", backbone=backbone, samples=samples)
        (tmp / "run2").mkdir()
        cached = train_model(config, tmp / "run2", backbone=backbone, samples=samples)
    extraction = first.extraction_seconds
    s1 = statistics.median(first.epoch_seconds.get("stage1", [float("nan")]))
    s2 = statistics.median(first.epoch_seconds.get("stage2", [float("nan")]))
    batches = f"{config.train.stage1_batch_size}/{config.train.stage2_batch_size}"
    print("| backbone | samples | batch (stage 1/2) | extraction pass (s) | cached read (s) | stage-1 epoch (s) | "
          "stage-2 epoch (s) | stage-1 / extraction | stage-2 / extraction |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.backbone} | {len(samples)} | {batches} | {extraction:.2f} | {cached.extraction_seconds:.2f} | "
          f"{s1:.3f} | {s2:.3f} | {100 * s1 / extraction:.1f}% | {100 * s2 / extraction:.1f}% |")


if __name__ == "__main__":
    main()
