"""Training losses of Align3D-AD: alignment + SCR (stage 1), prompt losses + DpCA (stage 2).

Pure functions on tensors; every function follows the device and dtype of its inputs. Names follow
the scikit-learn rule: ``*_loss`` / ``*_ce`` are lower-is-better scalars (0-d tensors).

* Stage 1 (METHOD.md §4): :func:`alignment_loss` (L_glob + L_loc) with :func:`scr_weights`.
* Stage 2 (METHOD.md §5): :func:`view_ce`, :func:`object_ce`, :func:`pixel_loss` (focal + 2 dice),
  :func:`point_loss` (2 dice over foreground points) and :func:`dpca_loss`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_shape
from ..errors import ShapeError

logger = logging.getLogger(__name__)

#: Default SCR strength λ (METHOD.md §5, "Defaults λ = 1.0").
SCR_LAMBDA = 1.0
#: Focusing parameter γ of the focal loss (METHOD.md §5, "Focal(γ=2)").
FOCAL_GAMMA = 2.0
#: Floor on the true-class probability inside the focal loss's log (AnomalyCLIP's FocalLoss adds
#: ``smooth = 1e-5`` to p_t for the same purpose: log(0) would be -inf).
FOCAL_EPS = 1e-5
#: Additive smoothing of the soft Dice coefficient, in numerator and denominator (AnomalyCLIP's
#: BinaryDiceLoss uses ``smooth = 1``): an empty mask predicted empty scores Dice = 1, loss 0.
DICE_SMOOTH = 1.0


@dataclass(frozen=True)
class AlignmentTerms:
    """The two parts of the stage-1 loss (METHOD.md §4), each a 0-d tensor.

    Attributes:
        global_term: L_glob = mean over views of 1 - cos(ĝ, g^C).
        local_term: L_loc = mean over views and tokens of w_i (1 - cos(f̂_i, f^C_i)).
        total: L_align = L_glob + L_loc.
    """

    global_term: torch.Tensor
    local_term: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """L_align = L_glob + L_loc."""
        return self.global_term + self.local_term


def _same_shape(
    a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], spec: str, *, min_dims: int
) -> None:
    if a.shape != b.shape or a.dim() < min_dims:
        raise ShapeError(
            f"{names[0]} and {names[1]} must have one shape {spec}, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _one_minus_cos(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos over the last dim; the target is cast to the prediction's dtype."""
    return 1.0 - F.cosine_similarity(pred, target.to(pred.dtype), dim=-1)


def alignment_terms(
    pred_global: torch.Tensor,
    target_global: torch.Tensor,
    pred_tokens: torch.Tensor,
    target_tokens: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
) -> AlignmentTerms:
    """L_glob and L_loc of METHOD.md §4 (see :func:`alignment_loss`)."""
    _same_shape(
        pred_global, target_global, ("pred_global", "target_global"), "(..., D)", min_dims=2
    )
    _same_shape(
        pred_tokens, target_tokens, ("pred_tokens", "target_tokens"), "(..., P, D)", min_dims=3
    )
    if pred_global.shape[:-1] != pred_tokens.shape[:-2]:
        raise ShapeError(
            "pred_global (..., D) and pred_tokens (..., P, D) must share leading dims, "
            f"got {tuple(pred_global.shape)} and {tuple(pred_tokens.shape)}"
        )
    local = _one_minus_cos(pred_tokens, target_tokens)  # (..., P)
    if weights is not None:
        if weights.shape != local.shape:
            raise ShapeError(
                f"weights must have shape {tuple(local.shape)} (..., P), got {tuple(weights.shape)}"
            )
        local = weights.to(local.dtype) * local
    return AlignmentTerms(_one_minus_cos(pred_global, target_global).mean(), local.mean())


def alignment_loss(
    pred_global: torch.Tensor,
    target_global: torch.Tensor,
    pred_tokens: torch.Tensor,
    target_tokens: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stage-1 loss L_align = L_glob + L_loc (METHOD.md §4).

    Token i of the prediction is compared with token i of the target (same camera, same patch).
    With SCR weights the local term is the plain mean of w_i (1 - cos) (not divided by sum w).

    Args:
        pred_global: Aligned global tokens ĝ, (M, D) (any leading dims, e.g. (B, V, D)).
        target_global: Colour-rendering global tokens g^C, same shape.
        pred_tokens: Aligned patch tokens f̂, (M, P, D).
        target_tokens: Colour-rendering patch tokens f^C, same shape.
        weights: SCR weights w (M, P) from :func:`scr_weights`, or None for w_i = 1.

    Returns:
        0-d tensor.

    Examples:
        >>> g = torch.randn(3, 4); t = torch.randn(3, 5, 4)
        >>> float(alignment_loss(g, g, t, t)) < 1e-6
        True
    """
    terms = alignment_terms(pred_global, target_global, pred_tokens, target_tokens, weights=weights)
    return terms.total


@torch.no_grad()
def scr_weights(
    render_tokens: torch.Tensor, colour_tokens: torch.Tensor, *, lam: float = SCR_LAMBDA
) -> torch.Tensor:
    """Semantic Consistency Reweighting weights w_i = 1 + λ·sigmoid(s_i) (METHOD.md §4).

    s_i = mean_j cos(f^R_i, f^C_j) over all tokens j of the matching colour view. For unit vectors
    this is f^R_i · mean_j f^C_j, so it costs O(P·D) instead of building the (P, P) cosine matrix.
    Computed without gradient (frozen features).

    Args:
        render_tokens: Rendering patch tokens f^R, (M, P, D) (CLS included, per METHOD.md §3).
        colour_tokens: Colour-rendering patch tokens f^C of the same views, (M, P, D).
        lam: SCR strength λ >= 0.

    Returns:
        Weights (M, P) in [1, 1 + λ], detached.
    """
    check_shape(render_tokens, "M P D", name="render_tokens")
    _same_shape(
        render_tokens, colour_tokens, ("render_tokens", "colour_tokens"), "(M, P, D)", min_dims=3
    )
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    f_r = F.normalize(render_tokens, dim=-1)
    mean_c = F.normalize(colour_tokens.to(f_r.dtype), dim=-1).mean(dim=-2)  # (M, D)
    s = torch.einsum("mpd,md->mp", f_r, mean_c)
    return 1.0 + lam * torch.sigmoid(s)


def focal_loss(
    probs: torch.Tensor, mask: torch.Tensor, *, gamma: float = FOCAL_GAMMA
) -> torch.Tensor:
    """Focal loss on 2-class probability maps (METHOD.md §5, item 3).

    mean over pixels of -(1 - p_t)^γ log p_t, p_t the probability of the true class
    (p_t = mask·p_anom + (1 - mask)·p_normal, so soft masks interpolate), floored at FOCAL_EPS.

    Args:
        probs: Softmax maps (B, 2, H, W), channel 0 normal, channel 1 anomalous.
        mask: Ground truth (B, H, W), bool or float in [0, 1], 1 = anomalous.
        gamma: Focusing parameter γ >= 0.

    Returns:
        0-d tensor.
    """
    dims = check_shape(probs, "B 2 H W", name="probs")
    check_shape(mask, f"{dims['B']} {dims['H']} {dims['W']}", name="mask")
    m = mask.to(probs.dtype)
    p_t = (m * probs[:, 1] + (1.0 - m) * probs[:, 0]).clamp(min=FOCAL_EPS, max=1.0)
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t)).mean()


def dice_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss, per sample then averaged over the batch (AnomalyCLIP's BinaryDiceLoss).

    loss = 1 - mean_b (2 Σ pred·target + s) / (Σ pred + Σ target + s), s = DICE_SMOOTH = 1,
    sums over all non-batch dims.

    Args:
        pred: Predicted probabilities (B, ...) in [0, 1].
        target: Targets of the same shape, bool or float in [0, 1].

    Returns:
        0-d tensor in [0, 1] for inputs in [0, 1].

    Examples:
        >>> float(dice_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])))
        0.0
    """
    if pred.shape != target.shape or pred.dim() < 1:
        raise ShapeError(
            f"pred and target must have one shape (B, ...), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    p = pred.reshape(pred.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    dice = (2.0 * (p * t).sum(dim=1) + DICE_SMOOTH) / (p.sum(dim=1) + t.sum(dim=1) + DICE_SMOOTH)
    return 1.0 - dice.mean()


def pixel_loss(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """2D pixel loss: Focal(γ=2) + Dice(anomalous, mask) + Dice(normal, 1 - mask) (METHOD.md §5).

    Args:
        probs: Upsampled softmax maps (B, 2, S, S) (channel 1 anomalous).
        mask: Rendered GT masks (B, S, S), 1 = anomalous.

    Returns:
        0-d tensor.
    """
    focal = focal_loss(probs, mask)
    m = mask.to(probs.dtype)
    return focal + dice_loss(probs[:, 1], m) + dice_loss(probs[:, 0], 1.0 - m)


def point_loss(
    point_probs: torch.Tensor, labels: torch.Tensor, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """3D point loss: Dice(anomalous, labels) + Dice(normal, 1 - labels) (METHOD.md §5, item 4).

    Fix (METHOD.md §5): only foreground points count. Pass the sample's valid points only
    (``PointCloudSample.points`` never holds background), or mark them with ``valid``. The Dice
    sums run over all given points as one set.

    Args:
        point_probs: Back-projected 2-class probabilities (N, 2), channel 1 anomalous.
        labels: Point labels (N,), bool or {0, 1}.
        valid: Optional bool mask (N,) of the points to use.

    Returns:
        0-d tensor.
    """
    dims = check_shape(point_probs, "N 2", name="point_probs")
    check_shape(labels, f"{dims['N']}", name="labels")
    if valid is not None:
        check_shape(valid, f"{dims['N']}", name="valid")
        point_probs, labels = point_probs[valid], labels[valid]
    y = labels.to(point_probs.dtype)[None]
    return dice_loss(point_probs[None, :, 1], y) + dice_loss(point_probs[None, :, 0], 1.0 - y)


def view_ce(global_logits: torch.Tensor, view_labels: torch.Tensor) -> torch.Tensor:
    """View-level cross-entropy of the global tokens (METHOD.md §5, item 1).

    Args:
        global_logits: cos(g, [t_n, t_a]) / τ per view, (B, V, 2).
        view_labels: (B, V), 1 if the view's GT mask has an anomalous pixel.

    Returns:
        0-d tensor, mean over the B·V views.
    """
    dims = check_shape(global_logits, "B V 2", name="global_logits")
    check_shape(view_labels, f"{dims['B']} {dims['V']}", name="view_labels")
    return F.cross_entropy(global_logits.reshape(-1, 2), view_labels.reshape(-1).long())


def object_ce(global_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Object-level cross-entropy of view-averaged global logits (METHOD.md §5, item 2).

    Fix (METHOD.md §5): each sample averages the logits of its own V views; the reference
    reshapes across the batch and mixes views of different samples when B > 1.

    Args:
        global_logits: Per-view logits (B, V, 2).
        labels: Object labels (B,), 0 normal / 1 anomalous.

    Returns:
        0-d tensor, mean over the B samples.
    """
    dims = check_shape(global_logits, "B V 2", name="global_logits")
    check_shape(labels, f"{dims['B']}", name="labels")
    return F.cross_entropy(global_logits.mean(dim=1), labels.long())


def _contrast(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """ℓ(a, p, n) = -log(e^{cos(a,p)} / (e^{cos(a,p)} + e^{cos(a,n)})) = softplus(cos_an - cos_ap)."""
    cos_ap = F.cosine_similarity(anchor, positive, dim=-1)
    cos_an = F.cosine_similarity(anchor, negative, dim=-1)
    return F.softplus(cos_an - cos_ap)


def dpca_loss(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Dual-Prompt Contrastive Alignment loss of one branch (METHOD.md §5, DpCA).

    L = ½[ℓ(t_n, sg o_n, t_a) + ℓ(t_a, sg o_a, t_n)] with raw cosines as logits (no temperature):
    the same state of the other modality is the positive, the opposite state of the own modality
    the negative. ``other`` is detached, so only the own branch's learner receives gradient.

    Args:
        own: This branch's text embeddings [t_n, t_a], (2, D).
        other: The other branch's text embeddings [o_n, o_a], (2, D).

    Returns:
        0-d tensor.
    """
    check_shape(own, "2 D", name="own")
    check_shape(other, f"2 {own.shape[1]}", name="other")
    o = other.detach().to(own.dtype)
    return 0.5 * (_contrast(own[0], o[0], own[1]) + _contrast(own[1], o[1], own[0]))


__all__ = [
    "DICE_SMOOTH",
    "FOCAL_EPS",
    "FOCAL_GAMMA",
    "SCR_LAMBDA",
    "AlignmentTerms",
    "alignment_loss",
    "alignment_terms",
    "dice_loss",
    "dpca_loss",
    "focal_loss",
    "object_ce",
    "pixel_loss",
    "point_loss",
    "scr_weights",
    "view_ce",
]
