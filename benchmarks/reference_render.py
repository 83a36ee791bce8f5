"""Reference-style rendering against our renderer and against the backbone it feeds, one run.

Renders one synthetic sample per format the way ``render.style: reference`` does at test time and
in training (the REFERENCE.md §1 resampling to 336², geometry and colour views, GT masks,
correspondences and visibility; 9 views), our own renderer on the native points (``render.style:
ours``, 336 px), and runs the ViT-L-14-336-shaped V-V extractor (random weights) on the 9 views of
one sample. Prints seconds (best of ``--repeats``) and the ratios, all from the same run, so the
share of the backbone cost does not depend on the machine's load of the day.

    python benchmarks/reference_render.py --threads 2 [--device cuda] [--no-backbone]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from align3d_ad.backbone import BackboneSpec, ImageFeatureExtractor, load_backbone
from align3d_ad.config import DataConfig
from align3d_ad.data import get_dataset
from align3d_ad.data.prepare import prepare_sample
from align3d_ad.data.reference import reference_resample
from align3d_ad.render import RenderSettings, render_samples
from align3d_ad.render.reference import ReferenceRenderSettings
from align3d_ad.synth import generate_dataset

DATA = {"mvtec3d": DataConfig(plane_cut_distance=0.001, plane_fit_threshold=0.0005),
        "eyecandies": DataConfig(), "real3d": DataConfig(remove_background=False)}  # fmt: skip
BACKBONE = "ViT-L-14-336-quickgelu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def one_sample(fmt: str, root: Path):
    """A labelled anomalous synthetic sample of ``fmt``, prepared, and its reference resampling."""
    generate_dataset(root / fmt, format=fmt, categories=None, small=False)
    reader = get_dataset(fmt, root / fmt)
    cat = reader.categories()[0]
    ref = next(r for r in reader.refs(cat, reader.labelled_split) if "good" not in r.sample_id)
    native = prepare_sample(reader.load(ref), DATA[fmt]).sample
    return native, reference_resample(native, 336)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["mvtec3d", "eyecandies", "real3d"])
    parser.add_argument("--no-backbone", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            native, resampled = one_sample(fmt, Path(tmp))
            ours = best_of(partial(render_samples, [native], fmt, RenderSettings(image_size=336),
                                   device=device), args.repeats, device)  # fmt: skip
            ref = best_of(partial(render_samples, [resampled], fmt, ReferenceRenderSettings(),
                                  device=device), args.repeats, device)  # fmt: skip
            rows.append((fmt, native.num_points, resampled.num_points, ours, ref))
    vv = None
    if not args.no_backbone:
        backbone = load_backbone(BackboneSpec(model_name=BACKBONE, pretrained=None), device=device)
        extractor = ImageFeatureExtractor(backbone)
        images = torch.rand(9, 3, backbone.image_size, backbone.image_size, device=backbone.device)
        with torch.inference_mode():
            vv = best_of(lambda: extractor(images), 1, device)
    print(f"device {device}, {args.threads} threads; 9 views at 336, colour + GT + correspondences")
    print("| format | native points | resampled points | ours (s) | reference style (s) | ratio |"
          + (" reference / ViT-L V-V of 9 views |" if vv else ""))
    for fmt, n_native, n_ref, ours, ref in rows:
        share = f" {ref / vv:.1%} |" if vv else ""
        print(f"| {fmt} | {n_native:,} | {n_ref:,} | {ours:.3f} | {ref:.3f} | {ref / ours:.2f} |{share}")
    if vv:
        print(f"ViT-L-14-336 V-V extractor, 9 views, random weights: {vv:.2f} s")


if __name__ == "__main__":
    main()
