"""``align3d-ad synth``: write a synthetic dataset in a benchmark's on-disk format."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ...synth import generate_dataset

    manifest = generate_dataset(
        args.out, format=args.format, categories=args.categories,
        seed=0 if args.seed is None else args.seed, small=args.small,
        train_good=args.train_good,
    )  # fmt: skip
    counts = manifest.to_dict()["categories"]
    total = sum(s["samples"] for cat in counts.values() for s in cat.values())
    print(f"wrote {total} samples of {len(counts)} categories ({args.format} format) to {args.out}")
    return 0
