"""``align3d-ad test``: score a dataset with a trained checkpoint and write its metrics."""

from __future__ import annotations

import argparse

from ... import distributed
from ..options import config_from_args, require_dir
from ..runs import start_run


def run(args: argparse.Namespace) -> int:
    from ...evaluate.runner import evaluate_dataset
    from ...evaluate.tables import combine_runs, write_results
    from ...model.checkpoint import read_checkpoint
    from ...model.detector import load_detector

    require_dir(args.root, "dataset root")
    doc = read_checkpoint(args.checkpoint)
    config = config_from_args(args, args.config)
    run_dir = start_run(args, args.out, config)
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
    )  # fmt: skip
    results = evaluate_dataset(
        detector, args.dataset, args.root, out_dir=run_dir, categories=args.categories,
        eval_config=config.eval,
    )  # fmt: skip
    if not distributed.is_main():
        return 0
    backbone = doc["backbone"]
    table = write_results(run_dir, combine_runs(
        {"test": results}, setting=f"test on {args.dataset}",
        backbone=f"{backbone['name']} ({backbone.get('source', 'weights')}; {backbone['fingerprint']})",
        random_weights=backbone["random_weights"],
    ))  # fmt: skip
    print(table)
    return 0
