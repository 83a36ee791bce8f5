"""``align3d-ad reproduce``: one published row of the paper, training included."""

from __future__ import annotations

import argparse

from ... import distributed
from ...device import set_deterministic
from .. import html
from ..options import config_from_args, require_dir
from ..runs import start_run
from ..summary import results_summary


def run(args: argparse.Namespace) -> int:
    from ...evaluate.protocol import run_protocol

    require_dir(args.root, "dataset root")
    if args.test_root is not None:
        require_dir(args.test_root, "test dataset root")
    config = config_from_args(args, args.config)
    set_deterministic(config.deterministic)  # --deterministic
    run_dir = start_run(args, args.out, config)
    hook = html.ReportHook() if html.wanted(args) else None
    doc = run_protocol(config, run_dir, root=args.root, test_root=args.test_root,
                       weights=args.weights, on_detector=hook)  # fmt: skip
    if distributed.is_main():
        if hook is not None:
            html.write_report(run_dir, title=f"align3d-ad reproduce {doc.get('setting')}", doc=doc,
                              hook=hook, config=config)  # fmt: skip
        runs = ", ".join(doc["runs"])
        results_summary(args, run_dir, title=f"reproduced {doc.get('setting')}: trained on {runs}",
                        doc=doc)  # fmt: skip
    return 0
