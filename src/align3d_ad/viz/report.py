"""``render_report``: render one sample, write its view grids, return coverage (the CLI's
``align3d-ad render`` calls this and prints the numbers)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.sample import PointCloudSample
from ..render import RenderCoverage, RenderSettings, ViewPreset, render_samples
from .grid import save_view_grid
from .heat import point_scores_to_view_heat

logger = logging.getLogger(__name__)

#: File names written into ``out_dir``.
GEOMETRY_PNG = "views.png"
COLOR_PNG = "views_color.png"
SCORES_PNG = "views_scores.png"


def render_report(
    sample: PointCloudSample,
    out_dir: str | Path,
    *,
    preset: ViewPreset | str,
    image_size: int,
    projection: str = "orthographic",
    splat_radius: float | None = None,
    scores=None,
    device: torch.device | str | None = None,
) -> RenderCoverage:
    """Render ``sample`` and write PNG view grids into ``out_dir``.

    Writes ``views.png`` (shaded geometry; ground-truth outlines when the sample has point labels),
    ``views_color.png`` when it has colours, and ``views_scores.png`` (heat overlay) when
    ``scores`` (N,) are given.

    Args:
        sample: The point cloud.
        out_dir: Output folder (created).
        preset: View preset or its name.
        image_size: Side S of the renderings.
        projection: ``"orthographic"`` or ``"perspective"``.
        splat_radius: Pixels; None = from the point spacing.
        scores: Optional (N,) per-point scores to overlay.
        device: Where to render (default CPU).

    Returns:
        Coverage: fraction of points visible in >= 1 view, mean views per point, splat radius.
    """
    settings = RenderSettings(
        image_size=image_size, projection=projection, splat_radius=splat_radius
    )
    rendering = render_samples([sample], preset, settings, device=device)
    out_dir = Path(out_dir)
    titles = list(rendering.preset.labels)
    mask = None if rendering.gt_masks is None else rendering.gt_masks[0]
    files = [save_view_grid(out_dir / GEOMETRY_PNG, rendering.images[0], mask=mask, titles=titles)]
    if rendering.color_images is not None:
        files.append(save_view_grid(out_dir / COLOR_PNG, rendering.color_images[0], titles=titles))
    if scores is not None:
        heat = point_scores_to_view_heat(rendering, [torch.as_tensor(scores)])[0]
        files.append(
            save_view_grid(
                out_dir / SCORES_PNG, rendering.images[0], heat=heat, mask=mask, titles=titles
            )
        )
    coverage = rendering.coverage()[0]
    logger.debug("rendered %s: %r -> %s", sample.sample_id, coverage, ", ".join(map(str, files)))
    return coverage


def describe_coverage(name: str, coverage: RenderCoverage, folder: str | Path | None = None) -> str:
    """One sentence about a rendered sample, e.g. ``bagel/test/crack/000: 1,265 points, 9 views,
    every point seen, 8.8 views per point; pictures in out/``."""
    seen = coverage.visible_fraction
    if seen >= 1.0:
        seen_text = "every point seen"
    elif seen <= 0.0:
        seen_text = "no point seen"
    else:  # never "100.0%" when a point is missing, nor "0.0%" when one is seen
        seen_text = f"{min(max(100 * seen, 0.1), 99.9):.1f}% of points seen"
    views = "1 view" if coverage.num_views == 1 else f"{coverage.num_views} views"
    text = (f"{name}: {coverage.num_points:,} points, {views}, {seen_text}, "
            f"{coverage.mean_views_per_point:.1f} views per point")  # fmt: skip
    return text if folder is None else f"{text}; pictures in {Path(folder)}/"
