"""Multi-view rendering, correspondences, back-projection and 3D smoothing (METHOD.md §2 and §6).

Typical use::

    preset = get_view_preset("mvtec3d")
    rendering = render_batch([points], preset, RenderSettings(image_size=336))
    # ... per-view maps (B, V, C, H, W) from the backbone and the prompts ...
    point_scores = back_project(maps, rendering)  # list of (N_i, C)
"""

from .backproject import (
    FILL_NEIGHBOURS,
    back_project,
    bilinear_taps,
    hidden_neighbours,
    sample_maps,
)
from .camera import (
    RenderSettings,
    normalisation,
    normalise,
    point_spacing,
    project,
    project_points,
)
from .rendering import RenderCoverage, Rendering, render_batch, render_samples
from .smooth import SmoothingPlan, smooth_grid_scores, smooth_point_scores, smoothing_plan
from .views import (
    ViewPreset,
    axis_rotation,
    get_view_preset,
    list_view_presets,
    register_view_preset,
    resolve_view_preset,
    view_preset_from_spec,
)

__all__ = [
    "FILL_NEIGHBOURS",
    "RenderCoverage",
    "RenderSettings",
    "Rendering",
    "ViewPreset",
    "axis_rotation",
    "back_project",
    "bilinear_taps",
    "get_view_preset",
    "hidden_neighbours",
    "list_view_presets",
    "normalisation",
    "normalise",
    "point_spacing",
    "project",
    "project_points",
    "register_view_preset",
    "render_batch",
    "render_samples",
    "resolve_view_preset",
    "sample_maps",
    "smooth_grid_scores",
    "smooth_point_scores",
    "SmoothingPlan",
    "smoothing_plan",
    "view_preset_from_spec",
]
