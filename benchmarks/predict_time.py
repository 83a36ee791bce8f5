"""Seconds of ``Detector.predict`` on one MVTec-sized organised scan, for comparing two checkouts.

An 800 x 800 grid (MVTec 3D-AD's scans): a background plane 4 cm below a dome, about 240k object
points after background removal, untrained head, tiny random backbone, no feature cache. Run it
once per checkout with the same interpreter, alternating, and compare the medians:

    PYTHONPATH=/path/to/old/src python benchmarks/predict_time.py --repeats 5 --threads 2
    PYTHONPATH=src python benchmarks/predict_time.py --repeats 5 --threads 2

Only APIs that exist since the first release are used, so an older checkout runs it too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from untrained import untrained_detector

import align3d_ad
from align3d_ad.data import PointCloudSample


def mvtec_sized_scan(size: int = 800) -> PointCloudSample:
    """A dome of radius 0.05 on a plane, 0.1 x 0.1 (data units as MVTec's metres), size^2 cells."""
    u = np.linspace(-0.05, 0.05, size)
    x, y = np.meshgrid(u, u)
    r2 = x**2 + y**2
    z = np.where(r2 < 0.035**2, np.sqrt(np.maximum(0.035**2 - r2, 0.0)), 0.0) + 0.5
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    return PointCloudSample.from_grid(xyz, sample_id="dome")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    detector = untrained_detector(device=args.device)
    sample = mvtec_sized_scan()
    detector.predict(sample)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pred = detector.predict(sample)
        times.append(time.perf_counter() - start)
    scored = int(pred.foreground.sum())
    print(f"{Path(align3d_ad.__file__).parent}: {sample.num_points} points, {scored} scored; "
          f"predict median {statistics.median(times):.3f} s (min {min(times):.3f}) "
          f"over {args.repeats}")  # fmt: skip


if __name__ == "__main__":
    main()
