"""``align3d-ad train``: both stages on the auxiliary categories of a config, into a run folder."""

from __future__ import annotations

import argparse

from ... import distributed
from ..options import config_from_args, require_dir
from ..runs import start_run


def run(args: argparse.Namespace) -> int:
    from ...training import train_model

    config = config_from_args(args, args.config)
    if args.root is not None:
        config = config.replace(**{"data.root": str(require_dir(args.root, "dataset root"))})
    run_dir = start_run(args, args.out, config, resume=args.resume)
    result = train_model(config, run_dir, resume=args.resume)
    if not distributed.is_main():
        return 0
    print(f"trained {config.method.variant} on {', '.join(config.data.train_categories)}: {run_dir}")
    if result.history:
        print("last epoch:", result.history[-1])
    return 0
