"""Learnable parts of Align3D-AD and their losses (METHOD.md §4-§6).

* :mod:`.aligner`: stage-1 feature aligner (h_g, h_l).
* :mod:`.losses`: alignment + SCR, focal/dice/pixel/point losses, view/object CE, DpCA.
* :mod:`.prompts`: object-agnostic learnable prompts with deep text prompts.
* :mod:`.scoring`: 2-class probabilities, patch maps, branch fusion.
* :mod:`.clip_zero_shot`: fixed prompt-ensemble text embeddings (baseline).
"""

from .aligner import AlignedFeatures, FeatureAligner
from .clip_zero_shot import prompt_ensemble, zero_shot_text
from .losses import (
    AlignmentTerms,
    alignment_loss,
    alignment_terms,
    dice_loss,
    dpca_loss,
    focal_loss,
    object_ce,
    pixel_loss,
    point_loss,
    scr_weights,
    view_ce,
)
from .prompts import PromptLearner, TextEncoder, count_trainable, deep_prompt_blocks
from .scoring import (
    TEMPERATURE,
    FusedScores,
    class_logits,
    class_probs,
    fuse_scores,
    global_probs,
    patch_grid,
    patch_maps,
)

__all__ = [
    "TEMPERATURE",
    "AlignedFeatures",
    "AlignmentTerms",
    "FeatureAligner",
    "FusedScores",
    "PromptLearner",
    "TextEncoder",
    "alignment_loss",
    "alignment_terms",
    "class_logits",
    "class_probs",
    "count_trainable",
    "deep_prompt_blocks",
    "dice_loss",
    "dpca_loss",
    "focal_loss",
    "fuse_scores",
    "global_probs",
    "object_ce",
    "patch_grid",
    "patch_maps",
    "pixel_loss",
    "point_loss",
    "prompt_ensemble",
    "scr_weights",
    "view_ce",
    "zero_shot_text",
]
