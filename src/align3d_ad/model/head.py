"""The trainable head of Align3D-AD: aligner + two prompt learners, features -> per-branch scores.

Branches (METHOD.md §1): ``aligned`` (C) scores the aligner's outputs (ĝ, f̂) against its own learned
prompts, ``rendering`` (R) scores the raw rendering features. The method variants and ablations are
switches of one head, not copies:

* ``align3d``: both branches (or one, with ``branches``), the aligner feeding branch C;
* ``pointad``: branch R only, no aligner (the PointAD method in this pipeline);
* ``clip-zero-shot``: branch R with fixed hand-written prompt ensembles, nothing trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MethodConfig
from .aligner import FeatureAligner
from .clip_zero_shot import zero_shot_text
from .prompts import PromptLearner, TextEncoder
from .scoring import class_logits

ALIGNED = "aligned"
RENDERING = "rendering"


def head_branches(method: MethodConfig) -> tuple[str, ...]:
    """The branches a method variant scores with."""
    if method.variant in ("pointad", "clip-zero-shot"):
        return (RENDERING,)
    return {"both": (ALIGNED, RENDERING), "aligned": (ALIGNED,), "rendering": (RENDERING,)}[
        method.branches
    ]


@dataclass
class BranchOutput:
    """Scores of one branch for B samples x V views.

    Attributes:
        global_logits: (B, V, 2) logits of the global token, [normal, anomalous].
        patch_probs: (B, V, 2, G, G) class probabilities per patch (layers averaged).
        text: (2, D) the text embeddings [t_n, t_a] used.
    """

    global_logits: torch.Tensor
    patch_probs: torch.Tensor
    text: torch.Tensor


class AnomalyHead(nn.Module):
    """Aligner and prompt learners of one method variant.

    Args:
        text_encoder: The frozen prompt-able text encoder (held by reference, not saved).
        embed_dim: Joint embedding width D.
        method: Variant, branches and prompt settings.
    """

    def __init__(self, text_encoder: TextEncoder, embed_dim: int, method: MethodConfig) -> None:
        super().__init__()
        self.method = method
        self.branches = head_branches(method)
        self.temperature = float(method.temperature)
        self.aligner = FeatureAligner(embed_dim) if ALIGNED in self.branches else None
        self.learners = nn.ModuleDict()
        if method.variant == "clip-zero-shot":
            self.register_buffer("fixed_text", zero_shot_text(text_encoder).float())
        else:
            for branch in self.branches:
                self.learners[branch] = PromptLearner(
                    text_encoder, n_ctx=method.n_ctx, deep_tokens=method.deep_tokens,
                    deep_depth=method.deep_depth,
                )  # fmt: skip

    @property
    def trainable(self) -> bool:
        return self.method.variant != "clip-zero-shot"

    def texts(self) -> dict[str, torch.Tensor]:
        """[t_n, t_a] (2, D) float32 per branch."""
        if self.method.variant == "clip-zero-shot":
            return {RENDERING: self.fixed_text}
        return {branch: learner().float() for branch, learner in self.learners.items()}

    def branch_features(
        self, branch: str, global_: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features a branch scores: the aligner's outputs for C, the raw features for R."""
        global_, tokens = global_.float(), tokens.float()
        if branch == ALIGNED:
            assert self.aligner is not None
            return self.aligner.align_global(global_), self.aligner.align_tokens(tokens)
        return global_, tokens

    def forward(
        self,
        global_: torch.Tensor,
        tokens: torch.Tensor,
        *,
        grid: int,
        texts: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, BranchOutput]:
        """Score B samples x V views in every branch.

        Args:
            global_: (B, V, D) global features of the geometry renderings.
            tokens: (B, V, L, 1+P, D) V-V patch tokens (CLS first), P = grid².
            grid: Patches per side G.
            texts: Precomputed :meth:`texts` (inference); None = encode now (training).

        Returns:
            {branch: :class:`BranchOutput`}.
        """
        texts = self.texts() if texts is None else texts
        b, v = global_.shape[:2]
        out = {}
        for branch in self.branches:
            g, t = self.branch_features(branch, global_, tokens)
            text = texts[branch]
            logits = class_logits(g, text, tau=self.temperature)  # (B, V, 2)
            probs = F.softmax(class_logits(t[..., 1:, :], text, tau=self.temperature), dim=-1)
            probs = probs.mean(dim=2)  # average the layers: (B, V, P, 2)
            maps = probs.reshape(b, v, grid, grid, 2).permute(0, 1, 4, 2, 3)
            out[branch] = BranchOutput(logits, maps, text)
        return out


def fuse_branches(
    points: dict[str, torch.Tensor], globals_: dict[str, torch.Tensor], *, alpha: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point and object scores from branch maps of any shape, (N,) points or (S, S) grids
    (METHOD.md §6; one branch: itself)."""
    if ALIGNED in points and RENDERING in points:
        point = beta * points[ALIGNED] + (1 - beta) * points[RENDERING]
        obj_map = alpha * points[ALIGNED] + (1 - alpha) * points[RENDERING]
        obj = obj_map.max() + alpha * globals_[ALIGNED] + (1 - alpha) * globals_[RENDERING]
        return point, obj
    (branch,) = points
    return points[branch], points[branch].max() + globals_[branch]
