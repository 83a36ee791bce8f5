"""Objects per second of ``test`` end to end, split into its stages, with and without loader workers.

Scores the test split of synthetic MVTec 3D-AD-format categories with ``evaluate_dataset`` (what
``align3d-ad test`` runs: reading, preparing, rendering, backbone, head, back-projection,
smoothing, metrics and the saved scores), an untrained head (timing only) and no feature cache
(the backbone runs for every object). For each ``--workers`` value, one warm-up batch, then the
timed pass; all rows come from one run of this script, so compare them as ratios.

Columns: objects/s; seconds per object of each stage (:mod:`align3d_ad.profiling`; ``read`` and
``prepare`` run in the worker processes when workers > 0, so they overlap the rest); ``wait``, the
main process waiting for the next batch (the device idle for want of data; with 0 workers it
holds the whole reading and preparing); peak memory (CUDA: peak allocated; CPU: growth of the
peak RSS). On CUDA a second, synchronised pass splits the device stages; "device share" is then
(render + backbone + head + back-project + smooth seconds per object of that pass) x (objects/s
of the unsynchronised pass), the share of the wall time the device has work queued.

    python benchmarks/throughput.py --backbone tiny-clip --samples 16 --workers 0 1 --threads 2
    python benchmarks/throughput.py --backbone ViT-L-14-336-quickgelu --device cuda \\
        --samples 96 --batch-size 8 --workers 0 4 8 --backbone-batch 72
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from untrained import untrained_detector

from align3d_ad import profiling
from align3d_ad.config import EvalConfig
from align3d_ad.evaluate.runner import evaluate_dataset
from align3d_ad.synth import generate_dataset

STAGES = ("read", "prepare", "wait", "render", "backbone", "head", "back-project", "smooth",
          "lift", "write")  # fmt: skip
DEVICE_STAGES = ("render", "backbone", "head", "back-project", "smooth")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pass(detector, root: Path, out: Path, args, workers: int, n: int, *, sync: bool) -> dict:
    cuda = detector.encoder.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss = _peak_rss_mib()
    scored = []
    profiling.enable(sync_cuda=sync)
    start = time.perf_counter()
    evaluate_dataset(
        detector, "mvtec3d", root, out_dir=out, categories=args.categories,
        eval_config=EvalConfig(workers=workers, batch_size=args.batch_size),
        select=lambda refs: refs[:n], on_prediction=lambda sample, pred: scored.append(1),
    )  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    stages = profiling.totals()
    profiling.disable()
    objects = len(scored)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib() - rss
    return {"objects": objects, "wall": wall, "stages": stages, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-clip")
    parser.add_argument("--categories", nargs="+", default=["gear"])
    parser.add_argument("--samples", type=int, default=16, help="test objects per category")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch-size", type=int, default=4, help="objects per batch")
    parser.add_argument("--backbone-batch", type=int, default=18, help="images per forward")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--small", action="store_true", help="the generator's small scans")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    detector = untrained_detector(args.backbone, device=args.device, precision=args.precision,
                                  overrides=[f"backbone.batch_size={args.backbone_batch}"])
    cuda = detector.encoder.device.type == "cuda"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_dataset(root, format="mvtec3d", categories=args.categories, small=args.small)
        for workers in args.workers:
            _pass(detector, root, Path(tmp) / "warm", args, workers, args.batch_size, sync=False)
            timed = _pass(detector, root, Path(tmp) / "out", args, workers, args.samples, sync=False)
            split = (_pass(detector, root, Path(tmp) / "sync", args, workers, args.samples,
                           sync=True) if cuda else timed)  # fmt: skip
            rows.append((workers, timed, split))
    print(f"backbone {args.backbone}, device {args.device}, precision "
          f"{detector.backbone.precision}, batch {args.batch_size} objects, backbone batch "
          f"{args.backbone_batch} images, {torch.get_num_threads()} threads")  # fmt: skip
    head = ["workers", "objects/s"] + [f"{s} (s/obj)" for s in STAGES]
    head += ["device share", "peak mem (MiB)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for workers, timed, split in rows:
        n = timed["objects"]
        rate = n / timed["wall"]
        per = {s: split["stages"].get(s, 0.0) / n for s in STAGES}
        share = sum(per[s] for s in DEVICE_STAGES) * rate
        cells = [str(workers), f"{rate:.2f}"] + [f"{per[s]:.3f}" for s in STAGES]
        cells += [f"{share:.0%}" if cuda else "-", f"{timed['peak']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    base = rows[0][1]["objects"] / rows[0][1]["wall"]
    for workers, timed, _ in rows[1:]:
        rate = timed["objects"] / timed["wall"]
        print(f"workers {workers} / workers {rows[0][0]}: {rate / base:.2f}x the objects/s")


if __name__ == "__main__":
    main()
