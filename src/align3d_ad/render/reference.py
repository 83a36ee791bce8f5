"""Rendering in reference style: what CLIP saw when the published numbers were made (REFERENCE.md §2).

The reference renders each view offline through Open3D's legacy ``Visualizer``; this module redoes
its image formation in torch (CPU or CUDA, no window, no Open3D):

* per-dataset pre-transform, then the view rotation about the cloud's *mean*;
* a perspective pinhole with a 60° field of view fitted to each view: it looks along -z at the
  centre of the rotated cloud's axis-aligned box from distance ``zoom / tan 30° · E = 1.2124 E``
  (E = the box's largest extent), ``f = (W/2) / tan 30°``, principal point ``W/2 - 0.5``;
  Eyecandies then backs off in steps of 0.005 (at least one) until every point projects inside;
* points as squares of ``point_size`` window pixels (every pixel whose centre lies in the square),
  nearest fragment wins; Open3D's default Phong set: lights at the box centre ± 2 E along the view
  axis (two at each, diffuse 0.66, specular 0.2, shininess 100, no ambient), grey 0.7, white
  background; captured as 8-bit (truncated) and resized to 336 with antialiased bicubic;
* GT views: a fresh default fit in a 1036 window, squares of 6, anomalous white on black, resized
  like the image and thresholded at 0.5; colour views: the same squares with the points' RGB;
* correspondences: the window projection scaled by 336/W (truncated when read); visibility: per
  336 pixel only the point with the largest rotated z (a z-buffer ignoring the footprint).

Normals: PCA over the hybrid neighbourhood (radius, at most k neighbours), unoriented, with the
sign Open3D's eigen solver gives (the diffuse term is lit from both sides, the specular one ignores
the sign; only the lights' distances differ).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from .splat import EMPTY_KEY, decode_keys, depth_keys, zbuffer

#: Open3D's default field of view and zoom (the fit distance is zoom / tan(fov / 2) x extent).
FOV_DEGREES = 60.0
ZOOM = 0.7
#: Point sizes (window pixels) of the reference MVTec 3D-AD scripts, per class.
MVTEC3D_POINT_SIZES = {
    "bagel": 7, "cable_gland": 12, "carrot": 7, "cookie": 6, "dowel": 10, "rope": 5, "peach": 7,
    "foam": 8, "potato": 8, "tire": 8,
}  # fmt: skip
#: Open3D's default Phong set (RenderOption): light offsets along the view axis in extents.
LIGHT_OFFSETS = (2.0, 2.0, -2.0, -2.0)
DIFFUSE, SPECULAR, SHININESS, ALBEDO = 0.66, 0.2, 100.0, 0.7


@dataclass(frozen=True)
class ReferenceStyle:
    """Per-dataset parameters of the reference renders."""

    window: int = 1024
    point_size: int = 7
    point_sizes: dict = field(default_factory=dict)  #: per category (MVTec 3D-AD)
    pre_transform: tuple = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
    normal_radius: float = 0.1
    normal_neighbours: int = 50
    fit_step: float | None = None  #: Eyecandies: back off in these steps until all points fit
    gt_window: int = 1036
    gt_point_size: int = 6


#: The reference styles by view-preset / dataset name (custom presets use ``mvtec3d``'s).
REFERENCE_STYLES: dict[str, ReferenceStyle] = {
    "mvtec3d": ReferenceStyle(point_sizes=dict(MVTEC3D_POINT_SIZES)),
    # Eyecandies: rendered in this project's world frame (the preset's pre-transform); see
    # docs/reproduce.md for the reference's tooling frame (axis swap, 45° tilt)
    "eyecandies": ReferenceStyle(window=1036, point_size=10, pre_transform=None, fit_step=0.005),
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


def eyecandies_tooling_transform() -> np.ndarray:
    """The reference's Eyecandies map from the tooling's organised cloud to the rendered one.

    Axis swap to (x, z, y) scaled by (0.1, -0.1, 0.1), i.e. 0.1 x a rotation by +90° about x,
    then the 45° tilt about x: 0.1 x R_x(135°). (Not applied by default: this project renders
    Eyecandies in the world frame of ``pose.txt``; see docs/reproduce.md.)
    """
    swap = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return 0.1 * tilt @ swap


def focal_length(window: int, fov_degrees: float = FOV_DEGREES) -> float:
    """Pinhole focal length in pixels: (W / 2) / tan(fov / 2) (886.81 at 1024, 897.20 at 1036)."""
    return (window / 2.0) / math.tan(math.radians(fov_degrees) / 2.0)


def fit_camera(rotated: torch.Tensor, *, zoom: float = ZOOM, fov_degrees: float = FOV_DEGREES):
    """Open3D's default fit to (V, N, 3) rotated clouds: box centre (V, 3) and distance (V,)."""
    lo, hi = rotated.amin(dim=1), rotated.amax(dim=1)
    extent = (hi - lo).amax(dim=1)
    return (lo + hi) / 2, zoom / math.tan(math.radians(fov_degrees) / 2.0) * extent, extent


def project_window(rotated, centre, distance, window: int, fov_degrees: float = FOV_DEGREES):
    """Window pixels (V, N, 2) (OpenCV: x right, y down, centres at integers) and depth (V, N)."""
    f = focal_length(window, fov_degrees)
    rel = rotated - centre[:, None]
    depth = distance[:, None] - rel[..., 2]
    pp = window / 2.0 - 0.5
    uv = torch.stack((f * rel[..., 0] / depth + pp, -f * rel[..., 1] / depth + pp), dim=-1)
    return uv, depth


def back_off(rotated, centre, distance, window: int, step: float, fov: float = FOV_DEGREES):
    """Eyecandies: the distance + k * step, k >= 1 the fewest steps that keep every point inside."""
    f, pp = focal_length(window, fov), window / 2.0 - 0.5
    rel = rotated - centre[:, None]
    # u in [0, W): f x / (d - z) + pp >= 0 and < W, likewise v with -y; solve each for d
    need = []
    for lateral in (rel[..., 0], -rel[..., 1]):
        pos = lateral.clamp_min(0) * f / (window - pp) + rel[..., 2]
        neg = (-lateral).clamp_min(0) * f / pp + rel[..., 2]
        need += [pos.amax(dim=1), neg.amax(dim=1)]
    minimum = torch.stack(need).amax(dim=0)
    k = torch.ceil((minimum - distance) / step + 1e-9).clamp_min(1)
    return distance + k * step


def estimate_normals(points: np.ndarray, radius: float, k: int) -> np.ndarray:
    """PCA normals over at most ``k`` neighbours within ``radius`` (Open3D's hybrid search).

    The sign is the one Open3D's unoriented estimate gives: its covariance from first and second
    moments and the robust symmetric 3 x 3 eigen solver (Eberly, Geometric Tools), vectorised.
    """
    pts = np.asarray(points, dtype=np.float64)
    k = min(k, len(pts))
    dist, idx = cKDTree(pts).query(pts, k=k, distance_upper_bound=radius)
    valid = np.isfinite(dist)
    idx = np.where(valid, idx, np.arange(len(pts))[:, None])
    nb = pts[idx]
    w = valid[..., None].astype(np.float64)
    count = w.sum(axis=1)
    mean = (nb * w).sum(axis=1) / count
    second = np.einsum("nki,nkj->nij", nb * w, nb) / count[..., None]
    return _robust_smallest_eigenvector(second - mean[:, :, None] * mean[:, None, :]).astype(np.float32)


def _eigvec_from_rows(a: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Eigenvector of symmetric (n, 3, 3) ``a`` for ``value``: the longest cross product of rows."""
    rows = a - value[:, None, None] * np.eye(3)
    crosses = np.stack([np.cross(rows[:, 0], rows[:, 1]), np.cross(rows[:, 0], rows[:, 2]),
                        np.cross(rows[:, 1], rows[:, 2])], axis=1)  # fmt: skip
    sq = (crosses**2).sum(-1)
    best = np.argmax(sq, axis=1)  # first maximum, as the solver's strict comparisons
    pick = crosses[np.arange(len(a)), best]
    length = np.sqrt(sq[np.arange(len(a)), best])[:, None]
    return pick / np.where(length > 0, length, 1.0)  # zero rows (degenerate): fixed up by caller


def _eigvec_in_plane(a: np.ndarray, first: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Eigenvector for ``value`` orthogonal to the known eigenvector ``first`` (2D subproblem)."""
    x, y, z = first[:, 0], first[:, 1], first[:, 2]
    use_x = np.abs(x) > np.abs(y)
    with np.errstate(divide="ignore", invalid="ignore"):  # zero rows (degenerate): caller fixes
        inv_xz = 1 / np.sqrt(np.where(use_x, x * x + z * z, 1.0))
        inv_yz = 1 / np.sqrt(np.where(use_x, 1.0, y * y + z * z))
        zero = np.zeros_like(x)
        u = np.where(use_x[:, None], np.stack([-z * inv_xz, zero, x * inv_xz], 1),
                     np.stack([zero, z * inv_yz, -y * inv_yz], 1))  # fmt: skip
    v = np.cross(first, u)
    au, av = np.einsum("nij,nj->ni", a, u), np.einsum("nij,nj->ni", a, v)
    m00 = (u * au).sum(1) - value
    m01 = (u * av).sum(1)
    m11 = (v * av).sum(1) - value
    out = u.copy()
    big00 = np.abs(m00) >= np.abs(m11)
    p, q = np.where(big00, m00, m11), m01  # the larger diagonal entry and the off-diagonal
    nonzero = np.maximum(np.abs(p), np.abs(q)) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        by_p = np.abs(p) >= np.abs(q)
        r = np.where(by_p, q / p, p / q)
        s = 1 / np.sqrt(1 + r * r)
        cp, cq = np.where(by_p, s, r * s), np.where(by_p, r * s, s)  # (p, q) normalised
    # m00 row: m01 U - m00 V; m11 row: m11 U - m01 V (the solver's two cases)
    vec = np.where(big00[:, None], cq[:, None] * u - cp[:, None] * v, cp[:, None] * u - cq[:, None] * v)
    return np.where(nonzero[:, None], vec, out)


def _robust_smallest_eigenvector(cov: np.ndarray) -> np.ndarray:
    """Eigenvector of the smallest eigenvalue of symmetric (n, 3, 3) matrices, Open3D's sign."""
    n = len(cov)
    scale = cov.reshape(n, 9).max(axis=1)
    out = np.tile([0.0, 0.0, 1.0], (n, 1))
    ok = scale != 0
    a = cov / np.where(ok, scale, 1.0)[:, None, None]
    off = a[:, 0, 1] ** 2 + a[:, 0, 2] ** 2 + a[:, 1, 2] ** 2
    d = np.stack([a[:, 0, 0], a[:, 1, 1], a[:, 2, 2]], 1)
    axis = np.where((d[:, 0] < d[:, 1]) & (d[:, 0] < d[:, 2]), 0,
                    np.where((d[:, 1] < d[:, 0]) & (d[:, 1] < d[:, 2]), 1, 2))  # fmt: skip
    diagonal = np.eye(3)[axis]
    q = d.sum(1) / 3
    b = d - q[:, None]
    p = np.sqrt(((b**2).sum(1) + off * 2) / 6)
    c00 = b[:, 1] * b[:, 2] - a[:, 1, 2] ** 2
    c01 = a[:, 0, 1] * b[:, 2] - a[:, 1, 2] * a[:, 0, 2]
    c02 = a[:, 0, 1] * a[:, 1, 2] - b[:, 1] * a[:, 0, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.clip((b[:, 0] * c00 - a[:, 0, 1] * c01 + a[:, 0, 2] * c02) / p**3 * 0.5, -1, 1)
    angle = np.arccos(np.nan_to_num(half)) / 3
    beta2, beta0 = np.cos(angle) * 2, np.cos(angle + 2.09439510239319549) * 2
    beta1 = -(beta0 + beta2)
    e0, e1, e2 = q + p * beta0, q + p * beta1, q + p * beta2
    general = ok & (off > 0)
    idx = np.flatnonzero(general)
    if idx.size:
        ag = a[idx]
        pos = half[idx] >= 0
        ev2 = _eigvec_from_rows(ag, e2[idx])
        ev1 = _eigvec_in_plane(ag, ev2, e1[idx])
        ev0 = _eigvec_from_rows(ag, e0[idx])
        out[idx] = np.where(pos[:, None], np.cross(ev1, ev2), ev0)
    out[ok & ~general] = diagonal[ok & ~general]
    bad = np.abs(np.linalg.norm(out, axis=1) - 1) > 1e-6  # repeated eigenvalues: any eigenvector
    if bad.any():
        out[bad] = np.linalg.eigh(cov[bad])[1][..., 0]
    return out


def _square_zbuffer(uv, depth, size: int, window: int) -> torch.Tensor:
    """(V, W, W) winning point index per window pixel of squares of ``size`` pixels, -1 empty."""
    n_v, n = depth.shape
    pad = size
    side = window + 2 * pad
    anchor = torch.ceil(uv - size / 2.0).to(torch.int64) + pad  # first covered pixel, padded
    inside = ((anchor >= 0) & (anchor < side)).all(dim=-1)
    keys = depth_keys(depth, torch.arange(n, device=depth.device)[None].expand(n_v, n))
    views = torch.arange(n_v, device=depth.device)[:, None].expand(n_v, n)
    flat = (views * side + anchor[..., 1]) * side + anchor[..., 0]
    img = zbuffer(keys[inside], flat[inside], n_v * side * side).view(n_v, side, side)
    # pixel j is covered by the anchors j - size + 1 .. j: a separable trailing min filter
    out = _trailing_min(_trailing_min(img, size, 2), size, 1)
    return decode_keys(out[:, pad : pad + window, pad : pad + window].contiguous())


def _trailing_min(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """``out[j] = min(x[j - size + 1 .. j])`` along ``dim`` (out-of-range terms ignored).

    Doubling: after k passes each entry holds the min of the 2^k entries ending at it; two
    overlapping windows of 2^k cover ``size`` (O(log size) passes, not size).
    """
    span, cur = 1, x
    while 2 * span <= size:
        nxt = cur.clone()
        nxt.narrow(dim, span, x.shape[dim] - span).copy_(torch.minimum(
            cur.narrow(dim, span, x.shape[dim] - span), cur.narrow(dim, 0, x.shape[dim] - span)))
        cur, span = nxt, 2 * span
    rest = size - span
    if rest == 0:
        return cur
    out = cur.clone()
    out.narrow(dim, rest, x.shape[dim] - rest).copy_(torch.minimum(
        cur.narrow(dim, rest, x.shape[dim] - rest), cur.narrow(dim, 0, x.shape[dim] - rest)))
    return out


def _resize_8bit(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float captures (..., W, W) in [0, 1] -> 8-bit (truncated) -> bicubic (antialiased) -> [0, 1]."""
    shape = images.shape
    q = torch.floor(images.clamp(0, 1) * 255.0).reshape(-1, 1, *shape[-2:])
    out = F.interpolate(q, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return (out.round().clamp(0, 255) / 255.0).reshape(*shape[:-2], size, size)


def _phong(rel_pos, normals, distance, extent) -> torch.Tensor:
    """Open3D's default Phong grey of every (view, point), in [0, 1]."""
    eye = torch.zeros_like(rel_pos)
    eye[..., 2] = distance[:, None]
    e = F.normalize(eye - rel_pos, dim=-1)
    total = torch.zeros(rel_pos.shape[:-1], dtype=rel_pos.dtype, device=rel_pos.device)
    for offset in LIGHT_OFFSETS:
        light = torch.zeros_like(rel_pos)
        light[..., 2] = offset * extent[:, None]
        ld = F.normalize(light - rel_pos, dim=-1)
        cos = (normals * ld).sum(-1)
        r = -ld + 2 * cos.unsqueeze(-1) * normals
        spec = (e * r).sum(-1).clamp(0, 1).pow(SHININESS)
        total = total + ALBEDO * DIFFUSE * cos.clamp(0, 1) + SPECULAR * spec
    return total.clamp(0, 1)


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
    """Render one cloud (N, 3) from V view rotations (V, 3, 3) in reference style (module doc)."""
    dtype, device = torch.float64, points.device
    pts = points.to(dtype)
    pre = torch.eye(3, dtype=dtype, device=device)
    if style.pre_transform is not None:
        pre = torch.tensor(style.pre_transform, dtype=dtype, device=device)
    pts = pts @ pre.T
    if normals is None:
        normals = torch.from_numpy(
            estimate_normals(pts.cpu().numpy(), style.normal_radius, style.normal_neighbours)
        ).to(device)
    rot = rotations.to(device, dtype)
    mean = pts.mean(dim=0)
    rotated = torch.einsum("vij,nj->vni", rot, pts - mean) + mean  # about the cloud's mean
    rot_normals = torch.einsum("vij,nj->vni", rot, normals.to(dtype))
    centre, distance, extent = fit_camera(rotated, zoom=settings.zoom, fov_degrees=settings.fov_degrees)
    gt_distance = distance
    if style.fit_step is not None:
        distance = back_off(rotated, centre, distance, style.window, style.fit_step, settings.fov_degrees)
    uv, depth = project_window(rotated, centre, distance, style.window, settings.fov_degrees)
    s = settings.image_size
    size = int(point_size or style.point_size)
    winner = _square_zbuffer(uv, depth, size, style.window)
    covered = winner >= 0
    grey = _phong(rotated - centre[:, None], rot_normals, distance, extent)
    view = torch.arange(len(rot), device=device)[:, None, None]
    image = torch.where(covered, grey[view, winner.clamp_min(0)], settings.background)
    images = _resize_8bit(image.float(), s).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    color_images = gt_masks = None
    if colors is not None:
        painted = colors.to(device, torch.float32)[winner.clamp_min(0)].permute(0, 3, 1, 2)
        painted = torch.where(covered.unsqueeze(1), painted, settings.background)
        color_images = _resize_8bit(painted, s)
    if labels is not None:
        guv, gdepth = project_window(rotated, centre, gt_distance, style.gt_window, settings.fov_degrees)
        gwin = _square_zbuffer(guv, gdepth, style.gt_point_size, style.gt_window)
        white = (gwin >= 0) & labels.to(device).bool()[gwin.clamp_min(0)]
        gt_masks = _resize_8bit(white.float(), s) > 0.5
    coords = (uv * (s / style.window)).to(torch.float32)
    ij = coords.to(torch.int64).clamp_(0, s - 1)
    n_v, n = depth.shape
    pixel = (torch.arange(n_v, device=device)[:, None] * s + ij[..., 1]) * s + ij[..., 0]
    keys = depth_keys(depth, torch.arange(n, device=device)[None].expand(n_v, n))
    best = zbuffer(keys.reshape(-1), pixel.reshape(-1), n_v * s * s)
    index_map = decode_keys(best.clone()).view(n_v, s, s)
    visible = best[pixel] == keys
    depth_map = torch.where(best == EMPTY_KEY, torch.inf, 0.0).view(n_v, s, s).to(torch.float32)
    hit = index_map >= 0
    depth_map[hit] = depth.to(torch.float32)[view.expand_as(index_map)[hit], index_map[hit]]
    return ReferenceViews(
        images=images, pixel_coords=coords.transpose(0, 1).contiguous(),
        point_depth=depth.to(torch.float32).T.contiguous(), visible=visible.T.contiguous(),
        index_map=index_map, depth=depth_map, color_images=color_images, gt_masks=gt_masks,
    )  # fmt: skip


def style_for(preset_name: str) -> ReferenceStyle:
    """The reference style of a view preset (``mvtec3d``'s for presets of other names)."""
    return REFERENCE_STYLES.get(preset_name, REFERENCE_STYLES["mvtec3d"])


def point_size_for(style: ReferenceStyle, category: str | None) -> int:
    """The reference point size of a category (the style's default for others)."""
    return int(style.point_sizes.get(category or "", style.point_size))


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
            torch.from_numpy(s.points).to(device), rotations, style, settings,
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
    "MVTEC3D_POINT_SIZES",
    "REFERENCE_STYLES",
    "ReferenceRenderSettings",
    "ReferenceStyle",
    "estimate_normals",
    "eyecandies_tooling_transform",
    "fit_camera",
    "focal_length",
    "project_window",
    "render_reference_samples",
    "render_reference_views",
    "style_for",
]
