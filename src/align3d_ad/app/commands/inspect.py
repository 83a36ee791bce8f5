"""``align3d-ad inspect``: what a reader sees in a dataset (counts, sizes, problems)."""

from __future__ import annotations

import argparse

from ..options import require_dir
from ..output import print_json


def run(args: argparse.Namespace) -> int:
    from ...data.inspect import inspect_dataset
    from ...progress import progress

    require_dir(args.root, "dataset root")
    bar = iter(progress(iter(int, 1), desc="reading"))  # an endless counter bar
    report = inspect_dataset(args.dataset, args.root, on_sample=lambda *a: next(bar, None))
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0
