"""Rendering in reference style: what CLIP saw when the published numbers were made (REFERENCE.md §2).

The reference renders each view offline through Open3D's legacy ``Visualizer``; this package redoes
its image formation in torch (CPU or CUDA, no window, no Open3D), one job per module:

* :mod:`.reference_camera`: Open3D's default fit (60° pinhole, distance 1.2124 E, box centre at
  ``W/2 - 0.5``) and the Eyecandies back-off;
* :mod:`.reference_normals`: unoriented PCA normals (Open3D's hybrid search; on CUDA on the device);
* :mod:`.reference_raster`: square points, the Phong headlights (normals turned to face the eye,
  as Open3D's shader does), the 8-bit capture and the bicubic resize;
* this module: the per-dataset frames (:class:`ReferenceStyle`), the views and the GT, colour,
  correspondence and visibility outputs.

Order of the reference scripts: ``pre_transform`` (the points and their frame), normals, ``tilt``
(points and normals, about the origin; Eyecandies only), then each view's rotation about the cloud's
mean. GT views: a fresh default fit in a 1036 window, squares of 6, anomalous white on black,
resized like the image and thresholded at 0.5; colour views: the same squares with the points' RGB.
Correspondences: the window projection scaled by 336/W (truncated when read); visibility: per 336
pixel only the point with the largest rotated z (a z-buffer ignoring the footprint).

Eyecandies frame (docs/reproduce.md): the reference starts from the official tooling's cloud, the
world frame of ``pose.txt`` that :class:`~align3d_ad.data.datasets.eyecandies.EyecandiesReader`
returns (``pose: world``; a cloud the reader turned up is turned back first); it maps it by
``0.1 R_x(90°)`` (axes to (x, -z, y), scaled by 0.1), estimates the normals, then tilts by
``R_x(45°)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .reference_camera import FOV_DEGREES, ZOOM, back_off, fit_camera, focal_length, project_window
from .reference_normals import estimate_normals, estimate_normals_torch
from .reference_raster import phong_grey, resize_8bit, square_zbuffer
from .splat import EMPTY_KEY, decode_keys, depth_keys, zbuffer

#: Point sizes (window pixels) of the reference MVTec 3D-AD scripts, per class.
MVTEC3D_POINT_SIZES = {
    "bagel": 7, "cable_gland": 12, "carrot": 7, "cookie": 6, "dowel": 10, "rope": 5, "peach": 7,
    "foam": 8, "potato": 8, "tire": 8,
}  # fmt: skip
#: 180 degrees about x (MVTec 3D-AD and Real3D-AD scripts).
FLIP_X = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))


def _rot_x(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def eyecandies_swap() -> np.ndarray:
    """The tooling cloud's axis swap to (x, z, y) scaled by (0.1, -0.1, 0.1): 0.1 R_x(90°)."""
    return 0.1 * np.round(_rot_x(90.0))


def eyecandies_tilt() -> np.ndarray:
    """The 45° tilt about x applied after the normals (Open3D ``transform``, about the origin)."""
    return _rot_x(45.0)


def eyecandies_tooling_transform() -> np.ndarray:
    """The whole Eyecandies map from the tooling's world frame to the rendered one: 0.1 R_x(135°)."""
    return eyecandies_tilt() @ eyecandies_swap()


def _matrix(m: np.ndarray) -> tuple:
    return tuple(map(tuple, np.asarray(m, dtype=np.float64).tolist()))


@dataclass(frozen=True)
class ReferenceStyle:
    """Per-dataset parameters of the reference renders."""

    window: int = 1024
    point_size: int = 7
    point_sizes: dict = field(default_factory=dict)  #: per category (MVTec 3D-AD)
    pre_transform: tuple = FLIP_X  #: applied before the normals (None: the preset's own)
    tilt: tuple | None = None  #: applied after the normals, to points and normals
    normal_radius: float = 0.1
    normal_neighbours: int = 50
    fit_step: float | None = None  #: Eyecandies: back off in these steps until all points fit
    gt_window: int = 1036
    gt_point_size: int = 6
    undo_turn_up: bool = False  #: turn back clouds the reader turned up (``meta["turned_up"]``)


#: The reference styles by view-preset / dataset name (custom presets use ``mvtec3d``'s).
REFERENCE_STYLES: dict[str, ReferenceStyle] = {
    "mvtec3d": ReferenceStyle(point_sizes=dict(MVTEC3D_POINT_SIZES)),
    "eyecandies": ReferenceStyle(
        window=1036, point_size=10, pre_transform=_matrix(eyecandies_swap()),
        tilt=_matrix(eyecandies_tilt()), fit_step=0.005, undo_turn_up=True,
    ),  # fmt: skip
    "real3d": ReferenceStyle(window=1036, point_size=12, normal_radius=0.8, normal_neighbours=30),
}


@dataclass(frozen=True)
class ReferenceRenderSettings:
    """Render settings of reference style (``render.style: reference``)."""

    image_size: int = 336
    projection: str = "reference"
    fov_degrees: float = FOV_DEGREES
    zoom: float = ZOOM
    background: float = 1.0


@dataclass
class ReferenceViews:
    """One sample's reference renders (V views)."""

    images: torch.Tensor  #: (V, 3, S, S)
    pixel_coords: torch.Tensor  #: (N, V, 2) at S
    point_depth: torch.Tensor  #: (N, V)
    visible: torch.Tensor  #: (N, V)
    index_map: torch.Tensor  #: (V, S, S) winner of the visibility z-buffer, -1 none
    depth: torch.Tensor  #: (V, S, S)
    color_images: torch.Tensor | None = None
    gt_masks: torch.Tensor | None = None


def reference_frame(points: torch.Tensor, style: ReferenceStyle, normals: torch.Tensor | None = None):
    """The cloud (N, 3) and its normals in the frame the views rotate (float64): ``pre_transform``,
    the normals (estimated there unless given), then ``tilt`` on both."""
    dtype, device = torch.float64, points.device
    pts = points.to(dtype)
    if style.pre_transform is not None:
        pts = pts @ torch.tensor(style.pre_transform, dtype=dtype, device=device).T
    if normals is None and device.type == "cuda":
        normals = estimate_normals_torch(pts, style.normal_radius, style.normal_neighbours)
    elif normals is None:
        normals = torch.from_numpy(
            estimate_normals(pts.cpu().numpy(), style.normal_radius, style.normal_neighbours)
        )
    normals = normals.to(device, dtype)
    if style.tilt is not None:
        tilt = torch.tensor(style.tilt, dtype=dtype, device=device)
        pts, normals = pts @ tilt.T, normals @ tilt.T
    return pts, normals


def render_reference_views(
    points: torch.Tensor,
    rotations: torch.Tensor,
    style: ReferenceStyle,
    settings: ReferenceRenderSettings,
    *,
    point_size: int | None = None,
    colors: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    normals: torch.Tensor | None = None,
) -> ReferenceViews:
    """Render one cloud (N, 3) from V view rotations (V, 3, 3) in reference style (module doc).

    ``normals`` (N, 3), when given, are in the frame after ``pre_transform`` (before ``tilt``).
    """
    device = points.device
    pts, normals = reference_frame(points, style, normals)
    rot = rotations.to(device, pts.dtype)
    mean = pts.mean(dim=0)
    rotated = torch.einsum("vij,nj->vni", rot, pts - mean) + mean  # about the cloud's mean
    rot_normals = torch.einsum("vij,nj->vni", rot, normals)
    fov = settings.fov_degrees
    centre, distance, extent = fit_camera(rotated, zoom=settings.zoom, fov_degrees=fov)
    gt_distance = distance
    if style.fit_step is not None:
        distance = back_off(rotated, centre, distance, style.window, style.fit_step, fov)
    uv, depth = project_window(rotated, centre, distance, style.window, fov)
    s, n_v, n = settings.image_size, depth.shape[0], depth.shape[1]
    winner = square_zbuffer(uv, depth, int(point_size or style.point_size), style.window)
    flat = winner.view(n_v, -1).clamp_min(0)
    empty = winner < 0
    grey = phong_grey(rotated - centre[:, None], rot_normals, distance, extent).float()
    image = grey.gather(1, flat).view_as(winner).masked_fill_(empty, settings.background)
    images = resize_8bit(image, s).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    color_images = gt_masks = None
    if colors is not None:
        painted = colors.to(device, torch.float32)[flat].view(*winner.shape, 3)
        painted = painted.masked_fill_(empty[..., None], settings.background)
        color_images = resize_8bit(painted.permute(0, 3, 1, 2), s)
    if labels is not None and not bool(labels.any()):  # no anomalous point: a black GT
        gt_masks = torch.zeros(n_v, s, s, dtype=torch.bool, device=device)
    elif labels is not None:
        guv, gdepth = project_window(rotated, centre, gt_distance, style.gt_window, fov)
        gwin = square_zbuffer(guv, gdepth, style.gt_point_size, style.gt_window)
        white = (gwin >= 0) & labels.to(device).bool()[gwin.clamp_min(0)]
        gt_masks = resize_8bit(white.float(), s) > 0.5
    coords = (uv * (s / style.window)).to(torch.float32)
    ij = coords.to(torch.int64).clamp_(0, s - 1)
    pixel = (torch.arange(n_v, device=device)[:, None] * s + ij[..., 1]) * s + ij[..., 0]
    keys = depth_keys(depth, torch.arange(n, device=device)[None].expand(n_v, n))
    best = zbuffer(keys.reshape(-1), pixel.reshape(-1), n_v * s * s)
    index_map = decode_keys(best.clone()).view(n_v, s, s)
    visible = best[pixel] == keys
    depth32 = depth.to(torch.float32)
    depth_map = depth32.gather(1, index_map.view(n_v, -1).clamp_min(0)).view(n_v, s, s)
    depth_map = depth_map.masked_fill_((best == EMPTY_KEY).view(n_v, s, s), torch.inf)
    return ReferenceViews(
        images=images, pixel_coords=coords.transpose(0, 1).contiguous(),
        point_depth=depth32.T.contiguous(), visible=visible.T.contiguous(),
        index_map=index_map, depth=depth_map, color_images=color_images, gt_masks=gt_masks,
    )  # fmt: skip


def style_for(preset_name: str) -> ReferenceStyle:
    """The reference style of a view preset (``mvtec3d``'s for presets of other names)."""
    return REFERENCE_STYLES.get(preset_name, REFERENCE_STYLES["mvtec3d"])


def point_size_for(style: ReferenceStyle, category: str | None) -> int:
    """The reference point size of a category (the style's default for others)."""
    return int(style.point_sizes.get(category or "", style.point_size))


def sample_style(style: ReferenceStyle, sample) -> ReferenceStyle:
    """``style`` for one sample: a cloud the Eyecandies reader turned up (``meta["turned_up"]``,
    180° about x) is turned back first, so every cloud starts from the tooling's frame."""
    if not (style.undo_turn_up and sample.meta.get("turned_up")):
        return style
    pre = np.eye(3) if style.pre_transform is None else np.asarray(style.pre_transform)
    return dataclasses.replace(style, pre_transform=_matrix(pre @ np.asarray(FLIP_X)))


def stack_views(views: Sequence[ReferenceViews]) -> dict[str, torch.Tensor | None]:
    """Batch the per-sample renders: images etc. stacked, per-point tensors packed."""
    out: dict[str, torch.Tensor | None] = {
        "images": torch.stack([v.images for v in views]),
        "depth": torch.stack([v.depth for v in views]),
        "index_map": torch.stack([v.index_map for v in views]),
        "pixel_coords": torch.cat([v.pixel_coords for v in views]),
        "point_depth": torch.cat([v.point_depth for v in views]),
        "visible": torch.cat([v.visible for v in views]),
    }
    for key in ("color_images", "gt_masks"):
        parts = [getattr(v, key) for v in views]
        out[key] = None if any(p is None for p in parts) else torch.stack(parts)
    return out


def render_reference_samples(
    samples: Sequence,
    preset,
    settings: ReferenceRenderSettings,
    *,
    device: torch.device | str | None = None,
    with_colors: bool = True,
    with_labels: bool = True,
) -> dict:
    """The fields of the :class:`~.rendering.Rendering` that :func:`~.rendering.render_samples`
    returns in reference style."""
    from .camera import point_spacing
    from .views import get_view_preset

    preset = get_view_preset(preset)
    device = torch.device("cpu") if device is None else torch.device(device)
    style = style_for(preset.name)
    if style.pre_transform is None:  # this project's frame: the preset's own pre-transform
        style = dataclasses.replace(style, pre_transform=tuple(map(tuple, preset.pre_transform)))
    rotations = torch.from_numpy(np.array(preset.rotations))
    colours = with_colors and bool(samples) and all(s.colors is not None for s in samples)
    labelled = with_labels and bool(samples) and all(s.point_labels is not None for s in samples)
    views = [
        render_reference_views(
            torch.from_numpy(s.points).to(device), rotations, sample_style(style, s), settings,
            point_size=point_size_for(style, s.category),
            colors=torch.from_numpy(s.colors).to(device) if colours else None,
            labels=torch.from_numpy(s.point_labels).to(device) if labelled else None,
        )
        for s in samples
    ]  # fmt: skip
    parts = stack_views(views)
    counts = tuple(int(s.num_points) for s in samples)
    n_b = len(samples)
    return {
        "images": parts["images"], "depth": parts["depth"], "index_map": parts["index_map"],
        "pixel_coords": parts["pixel_coords"], "point_depth": parts["point_depth"],
        "visible": parts["visible"],
        "points": torch.cat([torch.from_numpy(s.points) for s in samples]).to(device),
        "counts": counts, "preset": preset, "settings": settings,
        "centres": torch.zeros(n_b, 3, dtype=torch.float64), "scales": torch.ones(n_b, dtype=torch.float64),
        "spacing": torch.tensor([point_spacing(torch.from_numpy(s.points)) for s in samples]),
        "splat_radius": torch.tensor(
            [point_size_for(style, s.category) * settings.image_size / style.window / 2
             for s in samples]),
        "depth_tolerance": torch.zeros(n_b), "color_images": parts["color_images"],
        "gt_masks": parts["gt_masks"],
    }  # fmt: skip


__all__ = [
    "FLIP_X",
    "MVTEC3D_POINT_SIZES",
    "REFERENCE_STYLES",
    "ReferenceRenderSettings",
    "ReferenceStyle",
    "ReferenceViews",
    "estimate_normals",
    "eyecandies_swap",
    "eyecandies_tilt",
    "eyecandies_tooling_transform",
    "fit_camera",
    "focal_length",
    "point_size_for",
    "project_window",
    "reference_frame",
    "render_reference_samples",
    "render_reference_views",
    "sample_style",
    "style_for",
]
