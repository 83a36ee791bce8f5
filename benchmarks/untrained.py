"""The detector the timing benchmarks score with: configs/demo.yaml, random backbone weights, an
untrained head, no feature cache (timing only; scores mean nothing).

Only APIs that exist since the first release are used, so ``predict_time.py`` runs it against an
older checkout too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from align3d_ad.backbone import BackboneSpec, PromptableTextEncoder, load_backbone
from align3d_ad.config import load_config
from align3d_ad.model.checkpoint import make_encoder
from align3d_ad.model.detector import Detector
from align3d_ad.model.head import AnomalyHead

DEMO_CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


def untrained_detector(
    model_name: str = "tiny-clip",
    *,
    device: str = "cpu",
    precision: str | None = None,
    overrides: Sequence[str] = (),
) -> Detector:
    """A :class:`Detector` of ``model_name`` with random weights (``precision`` None = default)."""
    sets = [f"backbone.model_name={model_name}", "backbone.use_cache=false", f"device={device}"]
    spec = {"model_name": model_name, "pretrained": None}
    if precision is not None:
        sets.append(f"backbone.precision={precision}")
        spec["precision"] = precision
    config = load_config(DEMO_CONFIG, [*sets, *overrides])
    backbone = load_backbone(BackboneSpec(**spec), device=device)
    head = AnomalyHead(PromptableTextEncoder(backbone), backbone.embed_dim, config.method)
    return Detector(config, make_encoder(config, backbone), head)
