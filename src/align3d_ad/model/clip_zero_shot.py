"""Fixed [t_n, t_a] text embeddings from hand-written prompt ensembles (``clip-zero-shot`` baseline).

WinCLIP-style (Jeong et al., CVPR 2023; as kept by anomalib's ``winclip/prompting.py``): every
state phrase ("flawless {}", "{} with defect", ...) is put into every template ("a photo of a {}.",
...), each prompt is encoded by the frozen text encoder, the unit embeddings of one state are
averaged and the mean renormalised. No parameter is learnt. The prompts are data: pass your own
lists to change them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .prompts import TextEncoder, eot_positions

logger = logging.getLogger(__name__)

#: Object word used for object-agnostic prompts (AnomalyCLIP's "object").
OBJECT_NAME = "object"
#: Normal state phrases (WinCLIP, state level).
NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
#: Anomalous state phrases (WinCLIP, state level).
ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
#: Templates (WinCLIP, template level).
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
#: Prompts encoded per forward pass (bounds memory for ViT-L text towers).
BATCH_SIZE = 64


def prompt_ensemble(
    states: Sequence[str], *, object_name: str = OBJECT_NAME, templates: Sequence[str] = TEMPLATES
) -> list[str]:
    """Every state (with the object name) in every template, state-major.

    Examples:
        >>> prompt_ensemble(["damaged {}"], templates=["a photo of a {}."])
        ['a photo of a damaged object.']
    """
    return [t.format(s.format(object_name)) for s in states for t in templates]


@torch.no_grad()
def _encode_mean(text_encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
    """Mean of the unit embeddings of ``prompts``, renormalised: (D,)."""
    total = None
    for start in range(0, len(prompts), BATCH_SIZE):
        tokens = text_encoder.tokenize(prompts[start : start + BATCH_SIZE])
        emb = text_encoder.token_embedding(tokens)
        eot = eot_positions(text_encoder, tokens).to(emb.device)
        out = F.normalize(text_encoder(emb, eot, deep_prompts=None).float(), dim=-1).sum(dim=0)
        total = out if total is None else total + out
    assert total is not None
    return F.normalize(total / len(prompts), dim=-1)


def zero_shot_text(
    text_encoder: TextEncoder,
    *,
    object_name: str = OBJECT_NAME,
    normal_states: Sequence[str] = NORMAL_STATES,
    anomalous_states: Sequence[str] = ANOMALOUS_STATES,
    templates: Sequence[str] = TEMPLATES,
) -> torch.Tensor:
    """Fixed text embeddings [t_n, t_a] from prompt ensembles.

    Args:
        text_encoder: A frozen prompt-able text encoder.
        object_name: Word filled into the states ("object" keeps the baseline object-agnostic).
        normal_states: Normal state phrases with one ``{}``.
        anomalous_states: Anomalous state phrases with one ``{}``.
        templates: Sentence templates with one ``{}``.

    Returns:
        (2, D) float32, L2-normalised, on the encoder's device.
    """
    if not normal_states or not anomalous_states or not templates:
        raise ValueError("normal_states, anomalous_states and templates must each be non-empty")
    normal = prompt_ensemble(normal_states, object_name=object_name, templates=templates)
    anomalous = prompt_ensemble(anomalous_states, object_name=object_name, templates=templates)
    logger.debug("encoding %d normal and %d anomalous prompts", len(normal), len(anomalous))
    return torch.stack([_encode_mean(text_encoder, normal), _encode_mean(text_encoder, anomalous)])


__all__ = [
    "ANOMALOUS_STATES",
    "NORMAL_STATES",
    "OBJECT_NAME",
    "TEMPLATES",
    "prompt_ensemble",
    "zero_shot_text",
]
