"""Reference-style renders against Open3D's legacy Visualizer, view by view (optional, not in CI).

Renders the same cloud twice: with :mod:`align3d_ad.render.reference` (torch) and with the
procedure of REFERENCE.md §2 through Open3D (a hidden window per view: the per-dataset pre-transform,
normals by Open3D's hybrid search after it, Eyecandies' 45-degree tilt after those, rotation about the cloud's centre, Open3D's default view fit,
white background, lighting on, square points of the reference size, the Eyecandies back-off in
steps of 0.005, the float capture to 8 bit, PIL bicubic to 336; correspondences from the window's
pinhole camera scaled by 336/W). Prints per view: silhouette IoU at 336 (non-white pixels), mean
offset of the same points (pixels at 336), object grey-level mean of each (0-255).

Needs ``pip install open3d`` (headless: ``apt-get install libusb-1.0-0``; Open3D falls back to EGL).
The package does not depend on Open3D.

    python benchmarks/render_fidelity.py [--format mvtec3d|eyecandies|real3d|all] [--category NAME]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from align3d_ad.config import DataConfig
from align3d_ad.data import get_dataset
from align3d_ad.data.prepare import prepare_sample
from align3d_ad.data.reference import reference_resample
from align3d_ad.render import get_view_preset
from align3d_ad.render.reference import (
    ReferenceRenderSettings,
    point_size_for,
    render_reference_views,
    sample_style,
    style_for,
)
from align3d_ad.synth import generate_dataset

DATA = {"mvtec3d": DataConfig(plane_cut_distance=0.001, plane_fit_threshold=0.0005),
        "eyecandies": DataConfig(), "real3d": DataConfig(remove_background=False)}  # fmt: skip


def open3d_views(points: np.ndarray, preset, style, size: int, point_size: int):
    """The reference procedure through Open3D: 336 grey images and (N, 2) correspondences per view."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(np.full((len(points), 3), 0.7))
    pre = np.eye(4)
    pre[:3, :3] = np.asarray(style.pre_transform)
    cloud.transform(pre)  # then the normals, as the Real3D-AD script orders them
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(
        radius=style.normal_radius, max_nn=style.normal_neighbours))  # fmt: skip
    if style.tilt is not None:  # Eyecandies: the 45-degree tilt after the normals
        tilt = np.eye(4)
        tilt[:3, :3] = np.asarray(style.tilt)
        cloud.transform(tilt)
    images, coords = [], []
    # one hidden window for all views (a fresh one per view, as the reference does, renders empty
    # under EGL after the first); add_geometry refits the default view to each rotated cloud
    vis = o3d.visualization.Visualizer()
    vis.create_window(width=style.window, height=style.window, visible=False)
    for rot in preset.rotations:
        view = copy.deepcopy(cloud).rotate(rot, center=cloud.get_center())
        vis.clear_geometries()
        vis.add_geometry(view, reset_bounding_box=True)
        vis.reset_view_point(True)  # the box of this view's cloud only (not the union so far)
        control = vis.get_view_control()
        if style.fit_step is not None:  # back off until every point is inside the window
            while True:
                params = control.convert_to_pinhole_camera_parameters()
                ext = np.array(params.extrinsic)
                ext[2, 3] += style.fit_step
                params.extrinsic = ext
                control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
                uv = _project(np.asarray(view.points), control)
                if ((uv >= 0) & (uv < style.window)).all():
                    break
        option = vis.get_render_option()
        option.background_color = np.ones(3)
        option.light_on = True
        option.point_size = float(point_size)
        uv = _project(np.asarray(view.points), control)
        buf = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        img = Image.fromarray(np.clip(buf * 255, 0, 255).astype(np.uint8)).convert("L")
        images.append(np.asarray(img.resize((size, size), Image.BICUBIC)))
        coords.append(uv * size / style.window)
    vis.destroy_window()
    return images, coords


def _project(points: np.ndarray, control) -> np.ndarray:
    params = control.convert_to_pinhole_camera_parameters()
    k, ext = np.asarray(params.intrinsic.intrinsic_matrix), np.asarray(params.extrinsic)
    cam = points @ ext[:3, :3].T + ext[:3, 3]
    return np.stack((k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2],
                     k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]), axis=1)  # fmt: skip


def compare(fmt: str, category: str | None, root: Path) -> None:
    generate_dataset(root / fmt, format=fmt, categories=[category] if category else None, small=False)
    reader = get_dataset(fmt, root / fmt)
    cat = category or reader.categories()[0]
    ref = next(r for r in reader.refs(cat, reader.labelled_split) if "good" not in r.sample_id)
    sample = prepare_sample(reader.load(ref), DATA[fmt]).sample
    sample, _ = reference_resample(sample, 336)
    preset = get_view_preset(fmt)
    style = sample_style(style_for(preset.name), sample)
    point_size = point_size_for(style, sample.category)
    ours = render_reference_views(torch.from_numpy(sample.points), torch.from_numpy(np.array(preset.rotations)),
                                  style, ReferenceRenderSettings(), point_size=point_size)  # fmt: skip
    theirs, coords = open3d_views(sample.points, preset, style, 336, point_size)
    print(f"{fmt} / {cat} / {ref.sample_id}: {sample.num_points} points, window {style.window}, "
          f"point size {point_size}")  # fmt: skip
    print("view   IoU   offset px   grey ours   grey Open3D")
    for v, label in enumerate(preset.labels):
        a = (ours.images[v, 0].numpy() * 255).round()
        b = theirs[v].astype(np.float64)
        ma, mb = a < 255, b < 255
        iou = (ma & mb).sum() / max((ma | mb).sum(), 1)
        offset = np.linalg.norm(ours.pixel_coords[:, v].numpy() - coords[v], axis=1).mean()
        print(f"{label:>5} {iou:6.3f} {offset:10.3f} {a[ma].mean():11.1f} {b[mb].mean():13.1f}")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="all", choices=["all", "mvtec3d", "eyecandies", "real3d"])
    parser.add_argument("--category", default=None)
    args = parser.parse_args()
    formats = ["mvtec3d", "eyecandies", "real3d"] if args.format == "all" else [args.format]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            compare(fmt, args.category, Path(tmp))


if __name__ == "__main__":
    main()
