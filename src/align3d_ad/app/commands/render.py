"""``align3d-ad render``: one sample's views as PNG grids, and its visibility coverage."""

from __future__ import annotations

import argparse

from ...config import DataConfig
from ...data import get_dataset, load_point_cloud
from ...data.prepare import prepare_sample
from ...device import resolve_device
from ...errors import ConfigError, DatasetFormatError
from ...viz.report import render_report

#: The view preset of each dataset reader.
DATASET_VIEWS = {"mvtec3d": "mvtec3d", "eyecandies": "eyecandies", "real3d": "real3d"}


def _find_sample(dataset: str, root, sample: str):
    """Load sample ``<category>/<sample_id>`` (e.g. ``bagel/test/crack/000``)."""
    reader = get_dataset(dataset, root)
    return reader.load(reader.find(sample))


def render_command(args: argparse.Namespace) -> None:
    """Render the sample named on the command line and print its coverage."""
    if args.file is not None:
        if not args.file.exists():
            raise DatasetFormatError(args.file, "file does not exist")
        sample = load_point_cloud(args.file)
        views = args.views or "mvtec3d"
    else:
        if not args.root.exists():
            raise DatasetFormatError(args.root, "dataset root does not exist")
        sample = _find_sample(args.dataset, args.root, args.sample)
        views = args.views or DATASET_VIEWS.get(args.dataset, "mvtec3d")
    if args.size < 2:
        raise ConfigError(f"--size must be >= 2 pixels, got {args.size}")
    prepared = prepare_sample(sample, DataConfig(), seed=args.seed or 0).sample
    args.out.mkdir(parents=True, exist_ok=True)
    coverage = render_report(
        prepared, args.out, preset=views, image_size=args.size, device=resolve_device(args.device)
    )
    print(f"{sample.sample_id or sample.source}: {prepared.num_points} points, {coverage.num_views} views")
    print(f"visible in >= 1 view: {100 * coverage.visible_fraction:.1f}% of points; "
          f"mean views per point: {coverage.mean_views_per_point:.2f}; "
          f"splat radius {coverage.splat_radius:.2f} px")  # fmt: skip
    print(f"wrote {args.out}")


def run(args: argparse.Namespace) -> int:
    """The ``render`` command."""
    if args.file is None and not (args.dataset and args.root and args.sample):
        raise ConfigError("render needs a FILE, or --dataset NAME --root DIR --sample ID")
    render_command(args)
    return 0
