"""Benchmark: render + back-projection time and peak memory vs cloud size, image size and device.

Each configuration runs in a fresh subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after minus before the work) or its peak CUDA
allocation (``torch.cuda.max_memory_allocated``) is its own. The cloud is MVTec-like: an organised
height field (a plane with a torus and a bump) with N points, rendered from the 9 ``mvtec3d`` views.
Timings are medians over ``--repeats`` runs after one warm-up run.

Usage::

    python benchmarks/render.py                      # the default grid, prints a markdown table
    python benchmarks/render.py --sizes 200000 --image-sizes 336 --devices cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

DEFAULT_SIZES = (10_000, 100_000, 200_000, 1_000_000)
DEFAULT_IMAGE_SIZES = (224, 336)
#: Channels of the back-projected maps (normal / anomalous), METHOD.md §5.
MAP_CHANNELS = 2


def height_field(n: int) -> torch.Tensor:
    """An organised-grid-like cloud of about ``n`` points in a sensor frame (z away from sensor)."""
    side = int(round(np.sqrt(n)))
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    r = np.hypot(u, v)
    h = 0.25 * np.sqrt(np.clip(0.3**2 - (r - 0.55) ** 2, 0, None))
    h += 0.1 * np.exp(-((u + 0.1) ** 2 + (v - 0.4) ** 2) / 0.002)
    return torch.tensor(np.stack([u, v, 2.0 - h], -1).reshape(-1, 3), dtype=torch.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_child(n: int, size: int, device_name: str, repeats: int) -> dict:
    """Time render_batch and back_project for one configuration; return a result row."""
    from align3d_ad.render import RenderSettings, back_project, render_batch

    device = torch.device(device_name)
    points = height_field(n).to(device)
    maps = torch.rand(1, 9, MAP_CHANNELS, size, size, device=device)
    settings = RenderSettings(image_size=size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    render_times, bp_times = [], []
    first_bp = None
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        rendering = render_batch([points], "mvtec3d", settings)
        _sync(device)
        t1 = time.perf_counter()
        back_project(maps, rendering)
        _sync(device)
        t2 = time.perf_counter()
        back_project(maps, rendering)  # neighbour search cached: the training-step cost
        _sync(device)
        t3 = time.perf_counter()
        if i == 0:
            first_bp = t2 - t1
            continue
        render_times.append(t1 - t0)
        bp_times.append(t3 - t2)
    cov = rendering.coverage()[0]
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    render_s, bp_s = statistics.median(render_times), statistics.median(bp_times)
    return {
        "points": points.shape[0],
        "image_size": size,
        "device": device_name,
        "threads": torch.get_num_threads(),
        "render_s": render_s,
        "back_project_s": bp_s,
        "first_back_project_s": first_bp,
        "total_s": render_s + bp_s,
        "peak_mb": peak_mb,
        "splat_radius": cov.splat_radius,
        "visible_fraction": cov.visible_fraction,
    }


def markdown(rows: list[dict]) -> str:
    """Results as a markdown table."""
    head = (
        "| points | S | device | render (s) | back-project (s) | 1st back-project (s) "
        "| render + back-project (s) | peak mem (MiB) | splat r (px) |\n"
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        mem = "peak RSS +" if r["device"] == "cpu" else "CUDA "
        lines.append(
            f"| {r['points']:,} | {r['image_size']} | {r['device']} ({r['threads']} thr) "
            f"| {r['render_s']:.3f} | {r['back_project_s']:.3f} | {r['first_back_project_s']:.3f} "
            f"| {r['total_s']:.3f} | {mem}{r['peak_mb']:.0f} | {r['splat_radius']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--image-sizes", type=int, nargs="+", default=list(DEFAULT_IMAGE_SIZES))
    parser.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, and cuda if present"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--child", nargs=3, metavar=("N", "S", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        n, s, dev = args.child
        print(json.dumps(run_child(int(n), int(s), dev, args.repeats)))
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for dev in devices:
        for size in args.image_sizes:
            for n in args.sizes:
                cmd = [sys.executable, __file__, "--child", str(n), str(size), dev]
                cmd += ["--repeats", str(args.repeats)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(markdown(rows))


if __name__ == "__main__":
    main()
