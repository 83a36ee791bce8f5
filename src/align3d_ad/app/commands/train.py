"""``align3d-ad train``: both stages on the auxiliary categories of a config, into a run folder."""

from __future__ import annotations

import argparse

from ... import distributed
from ...device import set_deterministic
from ..options import config_from_args, require_dir
from ..runs import start_run
from ..summary import finish, train_summary


def run(args: argparse.Namespace) -> int:
    from ...training import train_model

    config = config_from_args(args, args.config)
    set_deterministic(config.deterministic)  # --deterministic
    if args.root is not None:
        config = config.replace(**{"data.root": str(require_dir(args.root, "dataset root"))})
    run_dir = start_run(args, args.out, config, resume=args.resume)
    result = train_model(config, run_dir, resume=args.resume)
    if not distributed.is_main():
        return 0
    if result.already_trained:  # the trainer said so in an information line (and in run.log)
        finish(args, [], [("run folder", run_dir)])
        return 0
    train_summary(args, config, result, run_dir)
    return 0
