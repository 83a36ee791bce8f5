"""From features and text embeddings to 2-class probabilities, maps and fused scores.

METHOD.md §5 (scores: softmax over [normal, anomalous] of cos / τ, τ fixed) and §6 (fusion of the
aligned branch C and the raw rendering branch R into point and object scores).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_shape
from ..errors import ShapeError

logger = logging.getLogger(__name__)

#: Fixed softmax temperature τ of the text-feature cosines (METHOD.md §5; CLIP / AnomalyCLIP 0.07).
TEMPERATURE = 0.07
#: Default weight α of branch C in the object score (METHOD.md §6, "Defaults α = β = 0.5").
ALPHA = 0.5
#: Default weight β of branch C in the point score (METHOD.md §6).
BETA = 0.5
#: Upsampling of patch maps uses ``align_corners=False``: each patch value sits at the centre of its
#: image cell, as in AnomalyCLIP's ``get_similarity_map`` (F.interpolate's default).
ALIGN_CORNERS = False


@dataclass(frozen=True)
class FusedScores:
    """Fused scores of one sample (METHOD.md §6).

    Attributes:
        point_scores: β A^C + (1 - β) A^R, (N,).
        object_score: max_n(α A^C + (1 - α) A^R) + α p^C + (1 - α) p^R, 0-d tensor.
    """

    point_scores: torch.Tensor
    object_score: torch.Tensor


def class_logits(
    features: torch.Tensor, text: torch.Tensor, *, tau: float = TEMPERATURE
) -> torch.Tensor:
    """cos(feature, [t_n, t_a]) / τ: (..., D), (2, D) -> (..., 2).

    Both inputs are L2-normalised here, so unnormalised inputs give true cosines. ``text`` is cast
    to the features' dtype and device.
    """
    if features.dim() < 1:
        raise ShapeError(f"features must have shape (..., D), got {tuple(features.shape)}")
    check_shape(text, f"2 {features.shape[-1]}", name="text")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    f = F.normalize(features, dim=-1)
    t = F.normalize(text.to(device=f.device, dtype=f.dtype), dim=-1)
    return f @ t.T / tau


def class_probs(
    features: torch.Tensor, text: torch.Tensor, *, tau: float = TEMPERATURE
) -> torch.Tensor:
    """Softmax over [normal, anomalous] of cos / τ: (..., D), (2, D) -> (..., 2).

    Examples:
        >>> text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> class_probs(torch.tensor([0.0, 2.0]), text).argmax().item()
        1
    """
    return class_logits(features, text, tau=tau).softmax(dim=-1)


def global_probs(
    global_: torch.Tensor, text: torch.Tensor, *, tau: float = TEMPERATURE
) -> torch.Tensor:
    """2-class probabilities of global tokens: (M, D), (2, D) -> (M, 2)."""
    check_shape(global_, "M D", name="global_")
    return class_probs(global_, text, tau=tau)


def patch_maps(
    tokens: torch.Tensor,
    text: torch.Tensor,
    *,
    grid: int,
    out_size: int,
    tau: float = TEMPERATURE,
) -> torch.Tensor:
    """Per-view 2-class patch maps, upsampled to the image size (METHOD.md §3, §5).

    Position 0 (CLS) is dropped; patch k (0-based, after CLS) is row k // grid, column k % grid
    (ViT raster order). Probabilities are upsampled bilinearly with ``align_corners=False`` (see
    ALIGN_CORNERS). With several layers (M, L, 1+P, D) the per-layer probability maps are averaged
    (averaging before upsampling equals averaging after, bilinear interpolation being linear).

    Args:
        tokens: Patch tokens with CLS, (M, 1+P, D) or (M, L, 1+P, D), P = grid².
        text: [t_n, t_a], (2, D).
        grid: Patches per image side.
        out_size: Image side S.
        tau: Softmax temperature.

    Returns:
        Probability maps (M, 2, S, S), channel 1 anomalous.
    """
    if tokens.dim() == 3:
        tokens = tokens[:, None]
    if tokens.dim() != 4:
        raise ShapeError(
            f"tokens must have shape (M, 1+P, D) or (M, L, 1+P, D), got {tuple(tokens.shape)}"
        )
    m, _, n_tok, _ = tokens.shape
    if grid <= 0 or n_tok - 1 != grid * grid:
        raise ShapeError(
            f"tokens must hold 1 + grid² = {1 + grid * grid} tokens for grid={grid}, got {n_tok}; "
            "pass the backbone's patch grid side"
        )
    if out_size <= 0:
        raise ValueError(f"out_size must be > 0, got {out_size}")
    probs = class_probs(tokens[:, :, 1:], text, tau=tau).mean(dim=1)  # (M, P, 2)
    maps = probs.reshape(m, grid, grid, 2).permute(0, 3, 1, 2)
    return F.interpolate(
        maps, size=(out_size, out_size), mode="bilinear", align_corners=ALIGN_CORNERS
    )


def patch_grid(n_tokens: int) -> int:
    """Grid side of a token sequence with CLS: 1 + grid² tokens -> grid."""
    grid = math.isqrt(max(n_tokens - 1, 0))
    if grid * grid != n_tokens - 1 or grid == 0:
        raise ShapeError(f"tokens must number 1 + grid² (CLS + square grid), got {n_tokens}")
    return grid


def fuse_scores(
    point_c: torch.Tensor,
    point_r: torch.Tensor,
    global_c: torch.Tensor | float,
    global_r: torch.Tensor | float,
    *,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> FusedScores:
    """Fuse the two branches into point and object scores (METHOD.md §6).

    Args:
        point_c: Anomalous point map A^C of the aligned branch, (N,).
        point_r: Anomalous point map A^R of the rendering branch, (N,).
        global_c: p^C, the mean over views of the anomalous global softmax (branch C), scalar.
        global_r: p^R, the same for branch R, scalar.
        alpha: Weight of branch C in the object score, in [0, 1].
        beta: Weight of branch C in the point score, in [0, 1].

    Returns:
        :class:`FusedScores`.

    Examples:
        >>> s = fuse_scores(torch.tensor([0.2, 0.8]), torch.tensor([0.4, 0.0]), 0.6, 0.2)
        >>> s.point_scores.tolist(), round(float(s.object_score), 6)
        ([0.30000001192092896, 0.4000000059604645], 0.8)
    """
    dims = check_shape(point_c, "N", name="point_c")
    check_shape(point_r, f"{dims['N']}", name="point_r")
    if dims["N"] == 0:
        raise ShapeError("point_c must hold at least one point, got 0")
    for name, w in (("alpha", alpha), ("beta", beta)):
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {w}")
    point_r = point_r.to(point_c.dtype)
    points = beta * point_c + (1.0 - beta) * point_r
    p_c = torch.as_tensor(global_c, dtype=point_c.dtype, device=point_c.device)
    p_r = torch.as_tensor(global_r, dtype=point_c.dtype, device=point_c.device)
    peak = (alpha * point_c + (1.0 - alpha) * point_r).max()
    return FusedScores(points, peak + alpha * p_c + (1.0 - alpha) * p_r)


__all__ = [
    "ALIGN_CORNERS",
    "ALPHA",
    "BETA",
    "TEMPERATURE",
    "FusedScores",
    "class_logits",
    "class_probs",
    "fuse_scores",
    "global_probs",
    "patch_grid",
    "patch_maps",
]
