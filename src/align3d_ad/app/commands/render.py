"""``align3d-ad render``: one sample's views as PNG grids, and its visibility coverage."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ...config import MAX_IMAGE_SIZE, MAX_SEED, DataConfig
from ...data import get_dataset, load_point_cloud
from ...data.prepare import prepare_sample
from ...device import resolve_device
from ...errors import ConfigError, DatasetFormatError
from ...render import get_view_preset
from ...viz.report import describe_coverage, render_report

#: The view preset of each dataset reader.
DATASET_VIEWS = {"mvtec3d": "mvtec3d", "eyecandies": "eyecandies", "real3d": "real3d"}
#: Peak bytes of a rendering per view pixel (z-buffer keys and their dilated copies, depth, index
#: maps, shaded and colour images, the PNG grid), and per point and view (projections, keys,
#: visibility); measured about 120 and 135 B per view pixel without and with colours.
BYTES_PER_VIEW_PIXEL = {False: 128, True: 160}
BYTES_PER_POINT_VIEW = 64


def render_bytes(size: int, num_views: int, num_points: int, *, colors: bool) -> int:
    """Estimated peak memory of rendering ``num_points`` points into ``num_views`` views of side ``size``."""
    per_pixel = BYTES_PER_VIEW_PIXEL[bool(colors)] * size * size
    return num_views * (per_pixel + BYTES_PER_POINT_VIEW * num_points)


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the rendering runs, None if unknown.

    CUDA: the GPU's free memory. CPU: ``MemAvailable``, or less when a container's memory limit
    (cgroup v2 or v1) leaves less.
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("memory.max", "memory.current"),
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            cap = Path("/sys/fs/cgroup", limit).read_text().strip()
            if cap.isdigit() and int(cap) < 2**62:
                free.append(int(cap) - int(Path("/sys/fs/cgroup", usage).read_text()))
                break
        except (OSError, ValueError):
            continue
    if not free:
        try:
            free.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            return None
    return max(0, min(free))


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad ``--size``, ``--seed`` and ``--out`` values before anything is read."""
    if not 2 <= args.size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"--size must lie in [2, {MAX_IMAGE_SIZE}] pixels, got {args.size}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must lie in [0, {MAX_SEED}], got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder; name a folder for the pictures")


def check_memory(size: int, num_views: int, num_points: int, colors: bool, device) -> None:
    """Refuse a rendering that would not fit in the memory of ``device``."""
    need = render_bytes(size, num_views, num_points, colors=colors)
    free = available_bytes(device)
    if free is not None and need > free:
        raise ConfigError(
            f"--size {size} needs about {need / 2**30:.1f} GiB for {num_views} views of "
            f"{num_points:,} points, more than the {free / 2**30:.1f} GiB free on {device}; "
            "use a smaller --size"
        )


def _find_sample(dataset: str, root, sample: str):
    """Load sample ``<category>/<sample_id>`` (e.g. ``bagel/test/crack/000``)."""
    reader = get_dataset(dataset, root)
    return reader.load(reader.find(sample))


def render_command(args: argparse.Namespace) -> None:
    """Render the sample named on the command line and print its coverage."""
    check_options(args)
    device = resolve_device(args.device)
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
    preset = get_view_preset(views)
    prepared = prepare_sample(sample, DataConfig(), seed=args.seed or 0).sample
    check_memory(args.size, preset.num_views, prepared.num_points, prepared.colors is not None, device)
    args.out.mkdir(parents=True, exist_ok=True)
    coverage = render_report(prepared, args.out, preset=preset, image_size=args.size, device=device)
    if not args.quiet:
        name = "/".join(p for p in (sample.category, sample.sample_id) if p) or str(sample.source)
        print(describe_coverage(name, coverage))
        print(f"visible in >= 1 view: {100 * coverage.visible_fraction:.1f}% of points; "
              f"splat radius {coverage.splat_radius:.2f} px")  # fmt: skip
    print(f"pictures: {args.out}")


def run(args: argparse.Namespace) -> int:
    """The ``render`` command."""
    if args.file is None and not (args.dataset and args.root and args.sample):
        raise ConfigError("render needs a FILE, or --dataset NAME --root DIR --sample ID")
    render_command(args)
    return 0
