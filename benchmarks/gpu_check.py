"""The steps of ``benchmarks/gpu_check.sh`` (one subcommand each; the script gives each its time
limit and collects what they print into its report).

    python benchmarks/gpu_check.py data OUT
    python benchmarks/gpu_check.py cli --device cuda --data DATA --out DIR [--deterministic] [--quick]
    python benchmarks/gpu_check.py compare A B [--bitwise] [--tolerance 1e-3]
    python benchmarks/gpu_check.py determinism --device cuda --data DATA --out DIR
    python benchmarks/gpu_check.py cache --device cuda --data DATA --run RUN --out DIR
    python benchmarks/gpu_check.py precision --device cuda --data DATA --run RUN
    python benchmarks/gpu_check.py speed --device cuda --data DATA [--weights FILE]

Exit status: 0 done, 77 skipped (the reason printed), anything else failed. Markdown table rows
(``| ... |``) are what the report keeps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

SKIPPED = 77
#: The tiny run: the demo config, two views at 112 px, the shortest schedules that still have a
#: second stage-2 epoch to interrupt and resume.
SETTINGS = [
    "data.train_categories=[bagel]", "train.stage1_epochs=1", "train.stage1_scr_epochs=1",
    "train.stage2_epochs=2", "train.stage2_dpca_epochs=1", "render.views=[[x, 0], [y, 30]]",
    "render.image_size=112",
]  # fmt: skip
CATEGORIES = ("bagel", "cookie")
DEFECTS = ("good", "crack")
REFERENCE_MODEL = "ViT-L-14-336-quickgelu"


def _cli(*argv) -> int:
    from align3d_ad.app.cli import main

    return main([str(a) for a in argv])


def _sets(items=SETTINGS) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------ data
def make_data(out: Path) -> Path:
    """Two samples (good, crack) of bagel and cookie in MVTec 3D-AD format, from the synthetic set."""
    from align3d_ad.synth import generate_dataset

    full = out / "synth"
    generate_dataset(full, format="mvtec3d", categories=list(CATEGORIES), small=True)
    mini = out / "mini"
    for category in CATEGORIES:
        for defect in DEFECTS:
            for kind, suffix in (("xyz", "tiff"), ("rgb", "png"), ("gt", "png")):
                src = full / category / "test" / defect / kind / f"000.{suffix}"
                dest = mini / category / "test" / defect / kind / src.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest)
    shutil.rmtree(full)
    return mini


# ------------------------------------------------------------------ the CLI end to end
def run_cli(device: str, data: Path, out: Path, *, deterministic: bool, quick: bool) -> dict:
    """train, interrupted train + --resume, test, predict, reproduce (unless quick) into ``out``."""
    from align3d_ad.training import trainer

    flags = ["--device", device, "--quiet"] + (["--deterministic"] if deterministic else [])
    common = [*flags, "--no-cache"]
    # training fills a feature cache of its own (the `cache` step reads it through the checkpoint)
    train = ["train", "--config", "configs/demo.yaml", "--root", data, *_sets(), *flags,
             "--cache-dir", out / "features"]  # fmt: skip
    seconds: dict[str, float] = {}

    def timed(name: str, *argv) -> None:
        torch.manual_seed(0)
        start = time.perf_counter()
        code = _cli(*argv)
        if code != 0:
            raise SystemExit(f"{name} exited with {code}")
        seconds[name] = time.perf_counter() - start

    timed("train", *train, "--out", out / "run")
    if not quick:  # interrupted in its second stage-2 epoch, then resumed
        real_epoch, calls = trainer.stage2_epoch, {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return real_epoch(*args, **kwargs)

        trainer.stage2_epoch = interrupted
        try:
            code = _cli(*train, "--out", out / "resumed")
        finally:
            trainer.stage2_epoch = real_epoch
        if code != 130:
            raise SystemExit(f"the interrupted train exited with {code}, not 130")
        timed("train --resume", *train, "--out", out / "resumed", "--resume")
        from safetensors.torch import load_file

        full, resumed = (load_file(out / name / "head.safetensors") for name in ("run", "resumed"))
        diff = max(float((full[k].float() - resumed[k].float()).abs().max()) for k in full)
        print("| --resume vs uninterrupted | max abs diff of the head | bitwise |")
        print("|---|---:|---|")
        print(f"| {device}{' --deterministic' if deterministic else ''} | {diff:.3g} | "
              f"{'yes' if diff == 0 else 'no'} |")  # fmt: skip
        if diff != 0 and (deterministic or device == "cpu"):
            raise SystemExit("a resumed run must equal the uninterrupted one bit for bit here")
    timed("test", "test", "--checkpoint", out / "run", "--dataset", "mvtec3d", "--root", data,
          "--categories", "cookie", "--out", out / "test", *common)  # fmt: skip
    if not quick:
        cloud = data / "cookie" / "test" / "crack" / "xyz" / "000.tiff"
        timed("predict", "predict", "--checkpoint", out / "run", cloud, "--out", out / "predict",
              *common)  # fmt: skip
        timed("reproduce", "reproduce", "--config", "configs/demo.yaml", "--root", data,
              "--out", out / "reproduce", *_sets([*SETTINGS, "protocol.auxiliaries=[bagel]",
                                                  "eval.categories=[cookie]"]), *common)  # fmt: skip
    summary = {"device": device, "deterministic": deterministic, "seconds": seconds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("| command | seconds |")
    print("|---|---:|")
    for name, value in seconds.items():
        print(f"| {name} ({device}) | {value:.1f} |")
    return summary


# ------------------------------------------------------------------ comparisons
def _flat_numbers(doc, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.update(_flat_numbers(value, f"{prefix}{key}."))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out[prefix.rstrip(".")] = float(doc)
    return out


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    """Every number a CLI run left: head tensors, saved scores, predictions, metrics."""
    from safetensors.torch import load_file

    found: dict[str, np.ndarray] = {}
    for head in sorted(folder.rglob("head.safetensors")):
        rel = head.parent.relative_to(folder)
        for key, value in load_file(head).items():
            found[f"head {rel}: {key}"] = value.float().numpy()
    for npz in sorted(folder.rglob("scores/*.npz")):
        with np.load(npz) as data:
            for key in data.files:
                if data[key].dtype.kind in "fiu":
                    found[f"scores {npz.relative_to(folder)}: {key}"] = data[key].astype(np.float64)
    for npy in sorted(folder.rglob("predict*/*.npy")):
        found[f"predict {npy.name}"] = np.load(npy).astype(np.float64)
    for metrics in sorted(folder.rglob("metrics.json")):
        numbers = _flat_numbers(json.loads(metrics.read_text()))
        for key, value in numbers.items():
            found[f"metrics {metrics.parent.relative_to(folder)}: {key}"] = np.array([value])
    return found


def compare(a: Path, b: Path, *, bitwise: bool, tolerance: float) -> int:
    """Print the largest difference of each kind of number between two CLI runs; 1 if too large."""
    left, right = _arrays(a), _arrays(b)
    missing = sorted(set(left) ^ set(right))
    groups: dict[str, list[float]] = {}
    equal = True
    for key in sorted(set(left) & set(right)):
        x, y = left[key], right[key]
        if x.shape != y.shape:
            missing.append(f"{key} (shapes {x.shape} and {y.shape})")
            continue
        both = np.isfinite(x) & np.isfinite(y)
        same_gaps = np.array_equal(np.isfinite(x), np.isfinite(y))
        diff = float(np.max(np.abs(x[both] - y[both]), initial=0.0)) if same_gaps else float("inf")
        equal &= bool(np.array_equal(x, y, equal_nan=True))
        groups.setdefault(key.split(" ", 1)[0], []).append(diff)
    print(f"| {a.name} vs {b.name} | numbers | max abs difference | bitwise |")
    print("|---|---:|---:|---|")
    worst = 0.0
    for kind, diffs in groups.items():
        worst = max(worst, max(diffs)) if kind != "metrics" else worst
        print(f"| {kind} | {len(diffs)} | {max(diffs):.3g} | {'yes' if max(diffs) == 0 else 'no'} |")
    print(f"| all | {sum(len(d) for d in groups.values())} | tolerance found: {worst:.3g} "
          f"(scores, heads, predictions) | {'yes' if equal else 'no'} |")  # fmt: skip
    if missing:
        print(f"only in one run: {', '.join(missing[:10])}")
        return 1
    if not groups:
        print("no numbers found to compare")
        return 1
    if bitwise and not equal:
        print("FAILED: expected bitwise equality")
        return 1
    if worst > tolerance:
        print(f"FAILED: difference {worst:.3g} above the tolerance {tolerance:g}")
        return 1
    return 0


# ------------------------------------------------------------------ cache, precision, speed
def _test_samples(data: Path):
    from align3d_ad.data import get_dataset

    reader = get_dataset("mvtec3d", data)
    return [reader.load(ref) for ref in reader.refs("cookie", reader.labelled_split)]


def cache_step(device: str, data: Path, run: Path, out: Path) -> int:
    """Scores with an empty feature cache (filled on ``device``), then read from it: equal."""
    from align3d_ad.model.detector import load_detector

    samples = _test_samples(data)
    fresh = load_detector(run, device=device, use_cache=False).predict(samples)
    filling = load_detector(run, device=device, cache_dir=out / "cache")
    filled = filling.predict(samples)
    reading = load_detector(run, device=device, cache_dir=out / "cache")
    read = reading.predict(samples)
    hits, misses = reading.encoder.cache.hits, reading.encoder.cache.misses
    diff_fill = max(float(np.max(np.abs(a.point_scores - b.point_scores))) for a, b in zip(fresh, filled))
    diff_read = max(float(np.max(np.abs(a.point_scores - b.point_scores))) for a, b in zip(filled, read))
    print("| feature cache | cache hits | cache misses | max abs diff of scores |")
    print("|---|---:|---:|---:|")
    print(f"| fill ({device}) vs no cache | {filling.encoder.cache.hits} | {filling.encoder.cache.misses} | {diff_fill:.3g} |")
    print(f"| read ({device}) vs fill | {hits} | {misses} | {diff_read:.3g} |")
    return 0 if hits > 0 and misses == 0 and diff_read == 0.0 and diff_fill <= 1e-3 else 1


def precision_step(device: str, data: Path, run: Path) -> int:
    """Scores of one head with the backbone in fp32 and in bf16."""
    from align3d_ad.backbone import load_backbone
    from align3d_ad.model.checkpoint import backbone_spec, checkpoint_config, read_checkpoint
    from align3d_ad.model.detector import load_detector

    config = checkpoint_config(read_checkpoint(run), run)
    samples = _test_samples(data)
    scores = {}
    for precision in ("fp32", "amp-bf16", "bf16"):
        spec = backbone_spec(dataclasses.replace(config.backbone, precision=precision))
        backbone = load_backbone(spec, device=device)
        detector = load_detector(run, device=device, use_cache=False, backbone=backbone)
        scores[precision] = detector.predict(samples)
    print("| against fp32 (tiny model, same head) | point scores max abs diff | object scores |")
    print("|---|---:|---:|")
    worst = 0.0
    for precision in ("amp-bf16", "bf16"):
        pairs = list(zip(scores["fp32"], scores[precision]))
        point = max(float(np.max(np.abs(a.point_scores - b.point_scores))) for a, b in pairs)
        obj = max(abs(a.object_score - b.object_score) for a, b in pairs)
        print(f"| {precision} | {point:.3g} | {obj:.3g} |")
        worst = max(worst, point) if np.isfinite(point) else np.inf
    return 0 if worst < 0.5 else 1


def speed_step(device: str, data: Path, weights: str | None, batch: int) -> int:
    """ViT-L-14-336 in bf16: extraction views/s, and one test pass (objects/s)."""
    from align3d_ad.backbone import (
        BackboneSpec,
        ImageFeatureExtractor,
        PromptableTextEncoder,
        load_backbone,
    )
    from align3d_ad.backbone.info import weights_status
    from align3d_ad.config import load_config
    from align3d_ad.model.checkpoint import make_encoder
    from align3d_ad.model.detector import Detector
    from align3d_ad.model.head import AnomalyHead

    spec = BackboneSpec(model_name=REFERENCE_MODEL, pretrained="openai", weights=weights, precision="bf16")
    status = weights_status(spec)
    if not status["available"]:
        print(f"skipped: {REFERENCE_MODEL} weights not available ({status['detail']})")
        return SKIPPED
    backbone = load_backbone(spec, device=device, allow_download=False)
    extractor = ImageFeatureExtractor(backbone)
    images = torch.rand(batch, 3, backbone.image_size, backbone.image_size, device=backbone.device)
    with torch.no_grad():
        extractor(images, batch_size=batch)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(3):
            extractor(images, batch_size=batch)
        _sync(device)
    views_per_s = 3 * batch / (time.perf_counter() - start)
    config = load_config("configs/demo.yaml", [f"backbone.model_name={REFERENCE_MODEL}",
                                               "backbone.pretrained=openai", "backbone.precision=bf16",
                                               "backbone.use_cache=false", f"device={device}"])  # fmt: skip
    head = AnomalyHead(PromptableTextEncoder(backbone), backbone.embed_dim, config.method).to(backbone.device)
    detector = Detector(config, make_encoder(config, backbone), head.eval())
    samples = _test_samples(data)
    detector.predict(samples[:1])  # warm-up
    _sync(device)
    start = time.perf_counter()
    detector.predict(samples)
    _sync(device)
    objects_per_s = len(samples) / (time.perf_counter() - start)
    print(f"| {REFERENCE_MODEL} bf16 ({device}) | value |")
    print("|---|---:|")
    print(f"| V-V extraction, batch {batch} (views/s) | {views_per_s:.1f} |")
    print(f"| one test pass, 9 views at 336 px, untrained head (objects/s) | {objects_per_s:.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("data")
    p.add_argument("out", type=Path)
    p = sub.add_parser("cli")
    p.add_argument("--device", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--quick", action="store_true", help="train and test only")
    p = sub.add_parser("determinism", help="two --deterministic train + test runs: bitwise?")
    p.add_argument("--device", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--bitwise", action="store_true")
    p.add_argument("--tolerance", type=float, default=1e-3)
    for name in ("cache", "precision", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--device", required=True)
        p.add_argument("--data", type=Path, required=True)
        if name != "speed":
            p.add_argument("--run", type=Path, required=True)
        if name == "cache":
            p.add_argument("--out", type=Path, required=True)
        if name == "speed":
            p.add_argument("--weights", default=os.environ.get("GPU_CHECK_WEIGHTS"))
            p.add_argument("--batch", type=int, default=18)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.step == "data":
        print(f"data: {make_data(args.out)}")
        return 0
    if args.step == "cli":
        run_cli(args.device, args.data, args.out, deterministic=args.deterministic, quick=args.quick)
        return 0
    if args.step == "determinism":
        for name in ("first", "second"):
            run_cli(args.device, args.data, args.out / name, deterministic=True, quick=True)
        return compare(args.out / "first", args.out / "second", bitwise=True, tolerance=0.0)
    if args.step == "compare":
        return compare(args.a, args.b, bitwise=args.bitwise, tolerance=args.tolerance)
    if args.step == "cache":
        return cache_step(args.device, args.data, args.run, args.out)
    if args.step == "precision":
        return precision_step(args.device, args.data, args.run)
    return speed_step(args.device, args.data, args.weights, args.batch)


if __name__ == "__main__":
    sys.exit(main())
