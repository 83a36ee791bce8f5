"""Paint per-point scores into rendered views (for heat overlays), the inverse of back-projection."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ShapeError
from ..render import Rendering


def point_scores_to_view_heat(
    rendering: Rendering, scores: Sequence[torch.Tensor] | torch.Tensor
) -> torch.Tensor:
    """Per-pixel score of the point each pixel shows.

    Args:
        rendering: A rendering of B samples, V views, S x S pixels.
        scores: B tensors (N_i,) or one packed (T,) tensor of per-point scores.

    Returns:
        (B, V, S, S) float: the score of the visible point, NaN on background.
    """
    if not isinstance(scores, torch.Tensor):
        if len(scores) != rendering.num_samples:
            raise ShapeError(
                f"scores must have one tensor per sample ({rendering.num_samples}), got {len(scores)}"
            )
        scores = torch.cat([torch.as_tensor(s).reshape(-1) for s in scores])
    total = sum(rendering.counts)
    if scores.shape != (total,):
        raise ShapeError(
            f"scores must hold one value per point ({total},), got {tuple(scores.shape)}"
        )
    scores = scores.to(rendering.index_map.device)
    if not scores.is_floating_point():
        scores = scores.float()
    covered = rendering.index_map >= 0
    rows = (rendering.index_map + rendering.offsets[:-1].view(-1, 1, 1, 1)).clamp_min(0)
    return torch.where(covered, scores[rows], torch.full_like(scores[rows], torch.nan))
