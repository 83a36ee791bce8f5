"""Scaling of one sample's inference: time and peak memory as the points grow and as the views grow.

Two sweeps of ``Detector.predict`` on one sample, split into its steps (prepare, render, backbone,
scoring + back-projection, smoothing) like ``benchmarks/inference.py``:

* points: 10k ... 2.7M points (Real3D-AD scans reach 2.7M) at 9 views (the ``mvtec3d`` angles);
* views: 1 ... 18 views at a fixed point count (200k): the first V of the 9 ``mvtec3d`` angles and
  9 more between and beyond them (``VIEW_ANGLES``, added in ``VIEW_ORDER``: 1 view is the frontal
  one; 9 views are exactly the ``mvtec3d`` angles).

The backbone is ``tiny-clip`` with random weights, so that the backbone is cheap and the parts
around it show (its cost depends on the views only, not on the points). Images are rendered at 336
pixels (the size of the published ViT-L/14@336 backbone; the tiny model resizes them to its 224).

Clouds (``--cloud``):

* ``object`` (default): a Real3D-AD-like unorganised cloud, a complete closed synthetic object
  (``align3d_ad.synth`` surface sampler, uniform by area) with a small bulge defect. This is
  the case that reaches millions of points. ``prepare`` is the realistic path for such clouds: an
  unorganised cloud has no background plane to cut (``prepare_sample`` returns it as is, no
  subsampling: ``data.max_points`` unset), so the step costs ~0.
* ``organised``: an MVTec 3D-AD-like organised height field (object on a plane, a grid of about N
  cells), for which ``prepare`` runs the background-plane RANSAC and the grid component step.

Each (points, views) configuration runs in a fresh subprocess, so its memory figure is its own:
the peak RSS growth of ``Detector.predict`` over the RSS before it (after imports, model load,
cloud load and a warm-up on a small cloud), read as ``VmHWM`` after resetting it with
``/proc/self/clear_refs`` (``ru_maxrss`` where that is not writable); on CUDA also the peak CUDA
allocation (``torch.cuda.max_memory_allocated``). The pipeline runs first, then its steps one by
one, each with the peak reset before it; "peak step" names the step with the highest peak (on
CUDA: CUDA peak). Timings are the best of ``--repeats`` runs.

Usage::

    python benchmarks/scaling.py --repeats 3            # both sweeps (about 10 min on 2 CPU cores)
    python benchmarks/scaling.py --quick                # smoke run (under a minute)
    python benchmarks/scaling.py --sweep points --sizes 100000 1000000 --threads 2
    python benchmarks/scaling.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

POINT_SIZES = (10_000, 100_000, 500_000, 1_000_000, 2_000_000, 2_700_000)
VIEW_COUNTS = (1, 3, 6, 9, 12, 18)
#: Points of the view sweep; views of the point sweep.
FIXED_POINTS = 200_000
FIXED_VIEWS = 9
IMAGE_SIZE = 336
#: The 9 MVTec 3D-AD reference angles, then 9 more spread between them (for up to 18 views).
VIEW_ANGLES = (
    ("x", -45.0), ("x", -15.0), ("x", 0.0), ("x", 15.0), ("x", 45.0),
    ("y", -30.0), ("y", -15.0), ("y", 15.0), ("y", 30.0),
    ("x", -30.0), ("x", 30.0), ("y", -45.0), ("y", 45.0), ("x", -60.0),
    ("x", 60.0), ("y", -60.0), ("y", 60.0), ("x", 180.0),
)  # fmt: skip
#: Order in which views are added (1 -> the frontal view, then spread out).
VIEW_ORDER = (2, 0, 4, 5, 8, 1, 3, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17)
STEPS = ("prepare", "render", "backbone", "score+backproject", "smooth")
CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


# ----------------------------------------------------------------------------------- clouds
def object_cloud(n: int, seed: int = 0) -> np.ndarray:
    """A complete closed object of ``n`` points (mm, Real3D-AD-like) with a small bulge defect."""
    from align3d_ad.synth.shapes import draw_shape
    from align3d_ad.synth.surface import apply_surface_defects, sample_surface

    rng = np.random.default_rng(seed)
    shape = draw_shape("bagel", rng)
    surface = sample_surface(shape, n, rng)
    view = np.array([0.0, 0.0, 1.0])
    scan = apply_surface_defects(surface, ("bulge",), view, shape.size, rng)
    return (scan.points * 1000.0).astype(np.float32)


def organised_grid(n: int) -> np.ndarray:
    """An MVTec-like (H, W, 3) grid of about ``n`` cells (metres): a torus on a plane.

    In the camera frame of the views (``mvtec3d``'s sensor-to-camera turn applied), as the views of
    the sweeps are given as a list of angles, which has no pre-transform.
    """
    side = int(round(np.sqrt(n)))
    u, v = np.meshgrid(np.linspace(-0.05, 0.05, side), np.linspace(-0.05, 0.05, side))
    r = np.hypot(u, v)
    h = 0.6 * np.sqrt(np.clip(0.012**2 - (r - 0.025) ** 2, 0, None))
    h += 0.002 * np.exp(-((u - 0.02) ** 2 + (v - 0.012) ** 2) / 2e-6)  # small bump defect
    return np.stack([u, -v, h - 0.4], -1).astype(np.float32)  # sensor frame turned to the camera


def make_sample(kind: str, path: Path):
    from align3d_ad.data.sample import PointCloudSample

    data = np.load(path)
    if kind == "organised":
        return PointCloudSample.from_grid(data, sample_id="bench")
    return PointCloudSample.from_points(data, sample_id="bench")


def write_cloud(kind: str, n: int, folder: Path) -> Path:
    path = folder / f"{kind}_{n}.npy"
    if not path.exists():
        np.save(path, organised_grid(n) if kind == "organised" else object_cloud(n))
    return path


# ------------------------------------------------------------------------------------ child
def _views(v: int) -> list[list]:
    return [list(VIEW_ANGLES[i]) for i in VIEW_ORDER[:v]]


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``), so the RSS is
    the live memory and a later peak is not hidden by reuse of memory freed before it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> float:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs``); return the current RSS (MiB).

    Without the reset the peak of the set-up (model load, cloud load) would hide a smaller peak of
    the pipeline. Falls back to the lifetime peak where ``clear_refs`` is not writable.
    """
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: argparse.Namespace) -> dict:
    """Time the steps of one configuration and measure its peak memory."""
    from align3d_ad.backbone import BackboneSpec, PromptableTextEncoder, load_backbone
    from align3d_ad.config import load_config
    from align3d_ad.data import prepare_sample
    from align3d_ad.model.checkpoint import make_encoder
    from align3d_ad.model.detector import Detector
    from align3d_ad.model.head import AnomalyHead
    from align3d_ad.render import back_project

    views = _views(args.views)
    overrides = [
        "backbone.model_name=tiny-clip", "backbone.use_cache=false", f"device={args.device}",
        f"render.views={json.dumps(views)}", f"render.image_size={args.image_size}",
    ]  # fmt: skip
    config = load_config(CONFIG, overrides)
    backbone = load_backbone(
        BackboneSpec(model_name="tiny-clip", pretrained=None), device=args.device
    )
    head = AnomalyHead(PromptableTextEncoder(backbone), backbone.embed_dim, config.method)
    encoder = make_encoder(config, backbone)
    detector = Detector(config, encoder, head)
    device = backbone.device
    sample = make_sample(args.cloud, Path(args.path))
    warm = make_sample(args.cloud, Path(args.warm_path))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    cuda = device.type == "cuda"
    base = {"host": 0.0, "cuda": 0.0}

    def reset_peaks() -> None:
        _reset_peak()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def peaks() -> dict[str, float]:
        out = {"host": _peak_mb() - base["host"]}
        if cuda:
            out["cuda"] = torch.cuda.max_memory_allocated(device) / 2**20 - base["cuda"]
        return out

    def run(s, memory: dict | None) -> dict[str, float]:
        """Whole pipeline, then its steps one by one; peak memory of each over the start RSS."""
        times = {}

        def clock(name, fn, *a, **kw):
            if memory is not None:
                reset_peaks()
            sync()
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            sync()
            times[name] = time.perf_counter() - t0
            if memory is not None:
                memory[name] = peaks()
            return out

        clock("pipeline", detector.predict, s)  # first: its peak is not inflated by the steps'
        prep = clock("prepare", prepare_sample, s, config.data, seed=config.seed)
        rendering = clock("render", encoder.render, [prep.sample])
        feats = clock(
            "backbone", encoder.extractor, rendering.images[0], batch_size=encoder.batch_size
        )
        g, t = feats.global_[None].float(), feats.tokens[None].float()

        def score():
            outs = head(g, t, grid=encoder.grid_size, texts=detector._texts)
            return {b: back_project(o.patch_probs, rendering)[0] for b, o in outs.items()}

        maps = clock("score+backproject", score)
        stacked = torch.stack([m[:, 1] for m in maps.values()], dim=1)
        clock("smooth", detector._smooth, prep, stacked, rendering, 0)
        times["points"] = prep.sample.num_points
        return times

    with torch.no_grad():
        run(warm, None)  # lazy initialisation (thread pools, kernels) out of the figures
        base["host"] = _reset_peak()
        if cuda:
            base["cuda"] = torch.cuda.memory_allocated(device) / 2**20
        memory: dict[str, dict[str, float]] = {}
        runs = [run(sample, memory)]
        for _ in range(args.repeats - 1):
            runs.append(run(sample, None))
    best = {k: min(r[k] for r in runs) for k in (*STEPS, "pipeline")}
    kind = "cuda" if cuda else "host"
    return best | {
        "points": sample.num_points, "rendered": runs[0]["points"], "views": args.views,
        "device": str(device), "threads": torch.get_num_threads(),
        "peak_mb": memory["pipeline"]["host"], "cuda_peak_mb": memory["pipeline"].get("cuda"),
        "peak_step": max(STEPS, key=lambda name: memory[name][kind]),
    }  # fmt: skip


# ----------------------------------------------------------------------------------- parent
def run_config(args: argparse.Namespace, path: Path, warm: Path, views: int) -> dict:
    cmd = [
        sys.executable, __file__, "--child", "--path", str(path), "--warm-path", str(warm),
        "--views-child", str(views), "--cloud", args.cloud, "--device", args.device,
        "--repeats", str(args.repeats), "--image-size", str(args.image_size),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def table(rows: list[dict], sweep: str) -> str:
    """Markdown table of one sweep.

    Linearity reads off the "marginal" columns: the growth of the pipeline time (peak memory)
    from the previous row divided by the growth of the points (or views); constant where linear.
    """
    unit = "M points" if sweep == "points" else "view"
    cuda = any(r["cuda_peak_mb"] is not None for r in rows)
    head = (
        "| points | rendered | views | "
        + " | ".join(f"{s} (s)" for s in STEPS)
        + " | pipeline (s) "
        f"| pipeline / {unit} (s) | marginal / {unit} (s) | peak RSS + (MiB) "
        f"| MiB / {unit} | marginal MiB / {unit} "
        + ("| peak CUDA (MiB) " if cuda else "")
        + "| peak step |"
    )
    lines = [head, "|---:" * (len(STEPS) + 10 + cuda) + "|---|"]
    previous = None
    for r in rows:
        size = r["points"] / 1e6 if sweep == "points" else r["views"]
        marginal = marginal_mb = "-"
        if previous is not None and size > previous[0]:
            grow = size - previous[0]
            marginal = f"{(r['pipeline'] - previous[1]) / grow:.3f}"
            marginal_mb = f"{(r['peak_mb'] - previous[2]) / grow:.0f}"
        previous = (size, r["pipeline"], r["peak_mb"])
        lines.append(
            f"| {r['points']:,} | {r['rendered']:,} | {r['views']} | "
            + " | ".join(f"{r[s]:.3f}" for s in STEPS)
            + f" | {r['pipeline']:.3f} | {r['pipeline'] / size:.3f} | {marginal} "
            f"| {r['peak_mb']:.0f} | {r['peak_mb'] / size:.0f} | {marginal_mb} "
            + (f"| {r['cuda_peak_mb']:.0f} " if cuda else "")
            + f"| {r['peak_step']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", choices=("points", "views", "both"), default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="points of the sweep")
    parser.add_argument("--views", type=int, nargs="+", default=None, help="view counts (1..18)")
    parser.add_argument("--fixed-points", type=int, default=FIXED_POINTS)
    parser.add_argument("--fixed-views", type=int, default=FIXED_VIEWS)
    parser.add_argument("--cloud", choices=("object", "organised"), default="object")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--warm-path", help=argparse.SUPPRESS)
    parser.add_argument("--views-child", type=int, dest="views_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        args.views = args.views_child
        print(json.dumps(run_child(args)))
        return
    sizes = args.sizes or ([5_000, 20_000] if args.quick else list(POINT_SIZES))
    view_counts = args.views or ([1, 3] if args.quick else list(VIEW_COUNTS))
    fixed_points = 20_000 if args.quick and args.fixed_points == FIXED_POINTS else args.fixed_points
    if args.quick:
        args.repeats = 1
    if max(view_counts) > len(VIEW_ANGLES) or min(view_counts) < 1:
        parser.error(f"--views must lie in 1..{len(VIEW_ANGLES)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = write_cloud(args.cloud, 2_000, folder)
        if args.sweep in ("points", "both"):
            rows = [run_config(args, write_cloud(args.cloud, n, folder), warm, args.fixed_views)
                    for n in sizes]  # fmt: skip
            print(f"\nPoints sweep ({args.cloud} cloud, {args.fixed_views} views, "
                  f"S = {args.image_size}):\n")  # fmt: skip
            print(table(rows, "points"), flush=True)
        if args.sweep in ("views", "both"):
            path = write_cloud(args.cloud, fixed_points, folder)
            rows = [run_config(args, path, warm, v) for v in view_counts]
            print(f"\nViews sweep ({args.cloud} cloud, {fixed_points:,} points, "
                  f"S = {args.image_size}):\n")  # fmt: skip
            print(table(rows, "views"), flush=True)


if __name__ == "__main__":
    main()
