"""Render a batch of point clouds from a view preset: images, correspondences, visibility (METHOD.md §2).

Batch layout. Samples have different point counts, so per-point tensors are *packed*: the points
of all B samples are concatenated into T = sum N_i rows, sample b owning rows
``offsets[b]:offsets[b + 1]`` (``Rendering.split`` returns per-sample views without copying).
Per-pixel tensors are dense (B, V, ...), all samples sharing the image size. Packing keeps memory
linear in points x views with no padding waste when one 200k-point scan sits next to a 10k one,
and every per-point step (projection, z-buffer keys, visibility, back-projection) is one tensor
operation over all samples and views. ``index_map`` stores the index of the winning point *within
its sample* (so ``sample.points[index_map[b, v]]`` works as is); ``offsets[b]`` turns it into a
packed row.

Visibility. A point is visible in a view when its depth is within the depth tolerance of the
z-buffer at its own pixel, so every point of a visible surface counts, not only the winner of each
pixel (Fix over the reference, METHOD.md §2). The tolerance scales with the splat radius, hence
with the point spacing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_shape
from ..errors import ShapeError
from .camera import (
    RenderSettings,
    auto_depth_tolerance,
    auto_splat_radius,
    normalisation,
    normalise,
    point_spacing,
    project_points,
)
from .facing import check_facing
from .shading import shade_depth
from .splat import close_gaps, decode_keys, depth_keys, dilate_keys, zbuffer
from .views import ViewPreset, get_view_preset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderCoverage:
    """How much of one cloud the views see.

    Attributes:
        num_points: N.
        num_views: V.
        visible_fraction: Fraction of points visible in at least one view.
        mean_views_per_point: Mean number of views a point is visible in.
        splat_radius: Splat radius used, in pixels.
        spacing: Point spacing in normalised units (unit-sphere radii).
    """

    num_points: int
    num_views: int
    visible_fraction: float
    mean_views_per_point: float
    splat_radius: float
    spacing: float


@dataclass
class Rendering:
    """Renderings of B samples from V views at S x S pixels; T = total points (packed).

    Attributes:
        images: (B, V, 3, S, S) in [0, 1], shaded grey geometry on white.
        depth: (B, V, S, S) depth of the visible surface, ``+inf`` on background.
        index_map: int64 (B, V, S, S) index of the winning point within its sample, -1 background.
        pixel_coords: (T, V, 2) continuous (column, row) position of every point in every view.
        point_depth: (T, V) depth of every point in every view.
        visible: bool (T, V), the point lies on the visible surface of the view.
        points: (T, 3) the input points, packed.
        counts: (N_0, ..., N_{B-1}).
        preset: The views.
        settings: The render settings.
        centres: float64 (B, 3) normalisation centres; ``scales`` float64 (B,) normalisation
            scales (see :func:`.camera.normalise`).
        spacing: (B,) point spacing (normalised units); ``splat_radius`` (B,) in pixels;
            ``depth_tolerance`` (B,) in normalised units.
        color_images: (B, V, 3, S, S) the same splats painted with per-point RGB, or None.
        gt_masks: bool (B, V, S, S), pixels whose visible point is anomalous, or None.
    """

    images: torch.Tensor
    depth: torch.Tensor
    index_map: torch.Tensor
    pixel_coords: torch.Tensor
    point_depth: torch.Tensor
    visible: torch.Tensor
    points: torch.Tensor
    counts: tuple[int, ...]
    preset: ViewPreset
    settings: RenderSettings
    centres: torch.Tensor
    scales: torch.Tensor
    spacing: torch.Tensor
    splat_radius: torch.Tensor
    depth_tolerance: torch.Tensor
    color_images: torch.Tensor | None = None
    gt_masks: torch.Tensor | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_samples(self) -> int:
        return len(self.counts)

    @property
    def num_views(self) -> int:
        return self.preset.num_views

    @property
    def image_size(self) -> int:
        return self.settings.image_size

    @property
    def offsets(self) -> torch.Tensor:
        """int64 (B + 1,) row offsets of the samples in the packed tensors."""
        counts = torch.tensor((0, *self.counts), dtype=torch.int64, device=self.points.device)
        return counts.cumsum(0)

    @property
    def batch_index(self) -> torch.Tensor:
        """int64 (T,) sample of every packed row."""
        counts = torch.tensor(self.counts, device=self.points.device)
        return torch.repeat_interleave(torch.arange(len(self.counts), device=counts.device), counts)

    def sample_slice(self, b: int) -> slice:
        """Rows of sample ``b`` in the packed tensors."""
        start = sum(self.counts[:b])
        return slice(start, start + self.counts[b])

    def split(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """Split a packed (T, ...) tensor into per-sample (N_i, ...) views."""
        if packed.shape[0] != sum(self.counts):
            raise ShapeError(
                f"packed tensor must have {sum(self.counts)} rows, got {packed.shape[0]}"
            )
        return list(torch.split(packed, list(self.counts)))

    def coverage(self) -> list[RenderCoverage]:
        """Per-sample visibility statistics."""
        views = self.visible.sum(dim=1)
        out = []
        for b, v in enumerate(self.split(views)):
            out.append(
                RenderCoverage(
                    num_points=int(v.numel()),
                    num_views=self.num_views,
                    visible_fraction=float((v > 0).float().mean()),
                    mean_views_per_point=float(v.float().mean()),
                    splat_radius=float(self.splat_radius[b]),
                    spacing=float(self.spacing[b]),
                )
            )
        return out


def _as_tensors(values: Sequence, device: torch.device | None) -> list[torch.Tensor]:
    """Convert a sequence of arrays/tensors to tensors on ``device``."""
    return [torch.as_tensor(v, device=device) for v in values]


def _check_inputs(points, colors, labels) -> tuple[list, list | None, list | None]:
    """Validate the per-sample inputs; return them as tensors on the first sample's device."""
    if isinstance(points, torch.Tensor | np.ndarray) or len(points) == 0:
        raise ShapeError("points must be a non-empty sequence of (N_i, 3) tensors, one per sample")
    first = torch.as_tensor(points[0])
    device = first.device
    points = _as_tensors(points, device)
    dtype = points[0].dtype if points[0].is_floating_point() else torch.float32
    for b, p in enumerate(points):
        n = check_shape(p, "N 3", name=f"points[{b}]")["N"]
        if n == 0:
            raise ShapeError(f"points[{b}] must hold at least one point, got an empty (0, 3) cloud")
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ValueError(f"points[{b}] must be finite, got NaN or inf; drop invalid rows first")
    points = [p.to(dtype) for p in points]
    for name, extra, spec in (("colors", colors, "{n} 3"), ("labels", labels, "{n}")):
        if extra is None:
            continue
        if len(extra) != len(points):
            raise ShapeError(
                f"{name} must have one entry per sample ({len(points)}), got {len(extra)}"
            )
        for b, (p, e) in enumerate(zip(points, extra)):
            check_shape(e, spec.format(n=p.shape[0]), name=f"{name}[{b}]")
    colors = None if colors is None else [c.to(dtype) for c in _as_tensors(colors, device)]
    labels = None if labels is None else [lb.bool() for lb in _as_tensors(labels, device)]
    return points, colors, labels


def _take(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source.flatten()[index]`` (a plain 1-D gather, faster than multi-index indexing)."""
    return source.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)


@dataclass(frozen=True)
class _Geometry:
    """Per-sample normalisation and splat parameters (lists of B Python floats)."""

    centres: torch.Tensor
    scales: torch.Tensor
    spacing: list[float]
    radius: list[float]
    tolerance: list[float]


def _per_sample_geometry(points: list[torch.Tensor], settings: RenderSettings) -> _Geometry:
    """Normalisation, spacing, splat radius and tolerance of every sample."""
    centres, scales, spacing, radius, tol = [], [], [], [], []
    for p in points:
        c, s = normalisation(p)
        sp = point_spacing(normalise(p, c, s))
        r = auto_splat_radius(sp, settings)
        centres.append(c)
        scales.append(s)
        spacing.append(sp)
        radius.append(r)
        tol.append(auto_depth_tolerance(r, settings))
    return _Geometry(torch.stack(centres), torch.stack(scales), spacing, radius, tol)


def _project_packed(packed, batch, geo: _Geometry, preset: ViewPreset, settings: RenderSettings):
    """(T, V, 2) pixel coordinates and (T, V) depths of the packed points in every view."""
    rot = torch.as_tensor(preset.camera_rotations(), dtype=packed.dtype, device=packed.device)
    if len(geo.radius) == 1:  # one sample: no per-point gather of its centre and scale
        normed = normalise(packed, geo.centres[0], geo.scales[0])
    else:
        normed = normalise(packed, geo.centres[batch], geo.scales[batch, None])
    return project_points(normed, rot, settings)


def _index_maps(xy, depth, batch, local, geo: _Geometry, settings: RenderSettings):
    """Z-buffer all (point, view) pairs at once, splat per sample: (B, V, S, S) index maps.

    Also returns the (T, V) flat pixel index of every point's own pixel.
    """
    n_b, n_v, size = len(geo.radius), depth.shape[1], settings.image_size
    ij = xy.to(torch.int32).clamp_(0, size - 1)  # truncation = floor for xy >= 0, then clamped
    view = torch.arange(n_v, device=depth.device) * (size * size)
    base = view if n_b == 1 else batch[:, None] * (n_v * size * size) + view
    pixel = (ij[..., 1].to(torch.int64) * size).add_(ij[..., 0]).add_(base)
    keys = depth_keys(depth, local[:, None]).reshape(-1)
    keys = zbuffer(keys, pixel.reshape(-1), n_b * n_v * size * size).view(n_b, n_v, size, size)
    keys = torch.stack([dilate_keys(keys[b], geo.radius[b]) for b in range(n_b)])
    if settings.close_gaps:
        keys = torch.stack([close_gaps(keys[b], geo.tolerance[b]) for b in range(n_b)])
    return decode_keys(keys), pixel


def _paint(depth_map, rows, covered, geo: _Geometry, settings: RenderSettings, colors, labels):
    """Shaded grey images (B, V, S, S), colour images and GT masks (or None) of the z-buffer."""
    grey = torch.stack(
        [
            shade_depth(depth_map[b], settings, radius=geo.radius[b], tolerance=geo.tolerance[b])
            for b in range(len(geo.radius))
        ]
    )
    color_images = gt_masks = None
    if colors is not None:
        painted = torch.cat(colors)[rows].permute(0, 1, 4, 2, 3)
        color_images = torch.where(covered.unsqueeze(2), painted, settings.background)
    if labels is not None:
        gt_masks = covered & torch.cat(labels)[rows]
    return grey, color_images, gt_masks


def render_batch(
    points: Sequence[torch.Tensor],
    preset: ViewPreset | str,
    settings: RenderSettings,
    *,
    colors: Sequence[torch.Tensor] | None = None,
    labels: Sequence[torch.Tensor] | None = None,
) -> Rendering:
    """Render B point clouds from the V views of ``preset``.

    Args:
        points: B tensors (N_i, 3), finite, N_i >= 1; float dtype and device of the first one are
            used throughout.
        preset: View preset or its registered name.
        settings: Render settings (image size S, projection, splat radius, ...).
        colors: B tensors (N_i, 3) in [0, 1] for the colour rendering, or None.
        labels: B bool tensors (N_i,) (True = anomalous) for the ground-truth masks, or None.

    Returns:
        The :class:`Rendering`.
    """
    preset = get_view_preset(preset)
    points, colors, labels = _check_inputs(points, colors, labels)
    dtype, device = points[0].dtype, points[0].device
    counts = tuple(int(p.shape[0]) for p in points)
    geo = _per_sample_geometry(points, settings)
    packed = torch.cat(points)
    sizes = torch.tensor(counts, device=device)
    batch = torch.repeat_interleave(torch.arange(len(points), device=device), sizes)
    offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    local = torch.arange(packed.shape[0], device=device) - offsets[batch]
    xy, depth = _project_packed(packed, batch, geo, preset, settings)
    index_map, pixel = _index_maps(xy, depth, batch, local, geo, settings)

    covered = index_map >= 0
    rows = (index_map + offsets[:-1].view(-1, 1, 1, 1)).clamp_min(0)
    view = torch.arange(preset.num_views, device=device).view(1, -1, 1, 1)
    depth_map = _take(depth, rows * preset.num_views + view).masked_fill_(~covered, torch.inf)
    tol = torch.tensor(geo.tolerance, dtype=dtype, device=device)
    visible = depth <= _take(depth_map, pixel) + (tol[0] if len(counts) == 1 else tol[batch, None])
    grey, color_images, gt_masks = _paint(depth_map, rows, covered, geo, settings, colors, labels)
    return Rendering(
        images=grey.unsqueeze(2).expand(-1, -1, 3, -1, -1).contiguous(),
        depth=depth_map, index_map=index_map, pixel_coords=xy, point_depth=depth,
        visible=visible, points=packed, counts=counts, preset=preset, settings=settings,
        centres=geo.centres, scales=geo.scales, spacing=torch.tensor(geo.spacing, dtype=dtype),
        splat_radius=torch.tensor(geo.radius, dtype=dtype), depth_tolerance=tol.cpu(),
        color_images=color_images, gt_masks=gt_masks,
    )  # fmt: skip


def render_samples(
    samples: Sequence,
    preset: ViewPreset | str,
    settings: RenderSettings,
    *,
    device: torch.device | str | None = None,
    with_colors: bool = True,
    with_labels: bool = True,
) -> Rendering:
    """Render :class:`~align3d_ad.data.PointCloudSample` objects (numpy) on ``device`` (default CPU).

    Colours / GT masks are rendered when every sample has them and ``with_colors`` /
    ``with_labels`` is set. :class:`~.reference.ReferenceRenderSettings` render in reference style.
    """
    from .reference import ReferenceRenderSettings, render_reference_samples

    if isinstance(settings, ReferenceRenderSettings):
        return Rendering(**render_reference_samples(
            samples, preset, settings, device=device, with_colors=with_colors,
            with_labels=with_labels,
        ))  # fmt: skip
    check_facing(samples, preset)  # a scan seen from behind its camera would show its far side
    device = torch.device("cpu") if device is None else torch.device(device)
    points = [to_device(s.points, device) for s in samples]
    colors = labels = None
    if with_colors and samples and all(s.colors is not None for s in samples):
        colors = [to_device(s.colors, device) for s in samples]
    if with_labels and samples and all(s.point_labels is not None for s in samples):
        labels = [to_device(s.point_labels, device) for s in samples]
    return render_batch(points, preset, settings, colors=colors, labels=labels)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array as a tensor on ``device``; to CUDA through pinned memory, without blocking."""
    host = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)
