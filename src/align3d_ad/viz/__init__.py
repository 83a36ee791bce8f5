"""Visualisation: PNG view grids with heat overlays, scored PLY export, render reports."""

from .grid import compose_views, heat_colors, save_view_grid
from .heat import point_scores_to_view_heat
from .ply import save_scored_ply
from .report import render_report

__all__ = [
    "compose_views",
    "heat_colors",
    "point_scores_to_view_heat",
    "render_report",
    "save_scored_ply",
    "save_view_grid",
]
