"""The tiny, randomly initialised, CLIP-shaped model used offline (tests and the demo).

It has the structure of an OpenAI CLIP ViT (same module and state-dict names, QuickGELU, 64-wide
attention heads, the real 49,408-token BPE vocabulary and 77-token context), only much smaller, so
every code path that runs on ViT-L/14@336 also runs here in milliseconds. Its weights are random:
anything computed with it is not comparable with published numbers (``Backbone.is_random``).

Sizes were chosen for the CPU demo (9 views x tens of samples must encode in seconds): 224 x 224
input, 16-pixel patches (a 14 x 14 patch grid, like ViT-L/14@224), 4 vision blocks of width 128
(2 heads of 64, the head width OpenAI's TorchScript loader assumes), 6 text blocks of width 64.
"""

from __future__ import annotations

from typing import Any

#: Registry name of the tiny model.
TINY_NAME = "tiny-clip"

#: open_clip model config (the format of ``open_clip/model_configs/*.json``) of the tiny model.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": 224,
        "layers": 4,
        "width": 128,
        "head_width": 64,
        "patch_size": 16,
    },
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 64,
        "heads": 1,
        "layers": 6,
    },
}

__all__ = ["TINY_MODEL_CFG", "TINY_NAME"]
