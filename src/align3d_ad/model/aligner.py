"""Stage-1 feature aligner: maps rendering features into the RGB (colour) feature space.

METHOD.md §4: two MLPs, h_g for the global token and h_l for the patch tokens, each
Linear(D,D)-GELU-Linear(D,D)-GELU-Linear(D,D); outputs are L2-normalised.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError

logger = logging.getLogger(__name__)

#: Number of Linear layers in each aligner MLP (METHOD.md §4).
MLP_DEPTH = 3


class AlignedFeatures(NamedTuple):
    """Output of :class:`FeatureAligner`.

    Attributes:
        global_: Aligned global tokens, (..., D), unit norm.
        tokens: Aligned patch tokens, (..., P, D), unit norm.
    """

    global_: torch.Tensor
    tokens: torch.Tensor


def _mlp(dim: int) -> nn.Sequential:
    """Linear(D,D)-GELU-Linear(D,D)-GELU-Linear(D,D)."""
    layers: list[nn.Module] = []
    for i in range(MLP_DEPTH):
        layers.append(nn.Linear(dim, dim))
        if i < MLP_DEPTH - 1:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class FeatureAligner(nn.Module):
    """Cross-modal aligner (h_g, h_l) of METHOD.md §4.

    Args:
        dim: Joint embedding width D of the backbone (768 for ViT-L/14).

    The MLPs run in the module's own dtype (float32 unless converted); inputs of another dtype
    (e.g. float16 cached features) are cast to it, and the outputs keep the module's dtype.

    Examples:
        >>> aligner = FeatureAligner(8)
        >>> g, t = aligner(torch.randn(2, 8), torch.randn(2, 5, 8))
        >>> tuple(g.shape), tuple(t.shape)
        ((2, 8), (2, 5, 8))
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.dim = dim
        self.h_g = _mlp(dim)
        self.h_l = _mlp(dim)

    def _check(self, x: torch.Tensor, name: str, min_dims: int) -> None:
        if x.dim() < min_dims or x.shape[-1] != self.dim:
            want = "(..., D)" if min_dims == 1 else "(..., P, D)"
            raise ShapeError(
                f"{name} must have shape {want} with D={self.dim}, got {tuple(x.shape)}"
            )

    def forward(self, global_: torch.Tensor, tokens: torch.Tensor) -> AlignedFeatures:
        """Align global and patch tokens.

        Args:
            global_: Rendering global tokens g^R, (..., D).
            tokens: Rendering patch tokens f^R (CLS included or not), (..., P, D).

        Returns:
            The aligned, L2-normalised (ĝ, f̂) with the input shapes.
        """
        return AlignedFeatures(self.align_global(global_), self.align_tokens(tokens))

    def align_global(self, global_: torch.Tensor) -> torch.Tensor:
        """Apply h_g alone: (..., D) -> (..., D), unit norm."""
        self._check(global_, "global_", 1)
        return F.normalize(self.h_g(global_.to(self.h_g[0].weight.dtype)), dim=-1)

    def align_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Apply h_l alone: (..., P, D) -> (..., P, D), unit norm."""
        self._check(tokens, "tokens", 2)
        return F.normalize(self.h_l(tokens.to(self.h_l[0].weight.dtype)), dim=-1)


__all__ = ["AlignedFeatures", "FeatureAligner", "MLP_DEPTH"]
