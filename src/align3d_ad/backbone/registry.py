"""Backbones as data: what to build, which weights belong to it, and how a run asks for one.

METHOD.md §3: the default backbone is OpenAI CLIP ViT-L/14@336px. Its open_clip name must be the
``-quickgelu`` variant: OpenAI trained with QuickGELU, and the plain ``ViT-L-14-336`` config builds
nn.GELU, which silently degrades every feature.

Any open_clip ViT model name works too (:func:`get_backbone_entry` derives an entry from open_clip's
config); the registered entries add what open_clip does not record, such as the SHA-256 of OpenAI's
original TorchScript file.
"""

from __future__ import annotations

import difflib
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import open_clip

from ..errors import ConfigError
from .tiny import TINY_MODEL_CFG, TINY_NAME

#: Default backbone (METHOD.md §3, "OpenAI CLIP ViT-L/14@336px").
DEFAULT_BACKBONE = "ViT-L-14-336-quickgelu"
#: Default open_clip pretrained tag of the default backbone.
DEFAULT_PRETRAINED = "openai"
#: First dual (V-V) block of the 24-block ViT-L (METHOD.md §3, "block 6 of 24"); other depths scale.
REFERENCE_VV_START = 6
REFERENCE_VV_DEPTH = 24
#: Precisions a backbone can run in.
#: ``auto``: ``amp-bf16`` on CUDA, ``fp32`` elsewhere; ``amp-bf16``: fp32 weights, the image
#: encoder's forward under bf16 autocast; ``bf16`` / ``fp16``: the weights are cast.
PRECISIONS = ("auto", "fp32", "amp-bf16", "bf16", "fp16")

# SHA-256 of OpenAI's original files, as published in their download URLs (open_clip pretrained.py).
_SHA_VIT_L14_336 = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
_SHA_VIT_L14 = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"
_SHA_VIT_B16 = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"


@dataclass(frozen=True)
class BackboneEntry:
    """One known backbone.

    Attributes:
        name: Registry name (an open_clip model name, or ``tiny-clip``).
        pretrained: The open_clip tag its reference weights have, or None (random init only).
        quick_gelu: Whether the architecture uses QuickGELU (OpenAI weights need it).
        image_size: Input side S in pixels.
        patch_size: Patch side in pixels; the patch grid is ``image_size // patch_size``.
        sha256: SHA-256 of the reference weights file (OpenAI's TorchScript .pt), or None.
        random_init: True for models that only exist randomly initialised (the tiny model).
        model_cfg: open_clip model config for models open_clip does not ship; None = open_clip's.
        description: One line for ``align3d-ad info``.
    """

    name: str
    pretrained: str | None
    quick_gelu: bool
    image_size: int
    patch_size: int
    sha256: str | None = None
    random_init: bool = False
    model_cfg: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    description: str = ""

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    def open_clip_config(self) -> dict[str, Any]:
        """A fresh copy of the open_clip model config that builds this backbone."""
        if self.model_cfg is not None:
            return deepcopy(self.model_cfg)
        cfg = open_clip.get_model_config(self.name)
        if cfg is None:
            raise ConfigError(f"backbone {self.name!r} has no open_clip model config")
        return cfg


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry, *, overwrite: bool = False) -> None:
    """Add ``entry`` to the registry (``overwrite=True`` to replace an entry of the same name)."""
    if entry.name in _REGISTRY and not overwrite:
        raise ConfigError(f"backbone {entry.name!r} is already registered; pass overwrite=True")
    _REGISTRY[entry.name] = entry


def list_backbones() -> list[str]:
    """Names of the registered backbones (any other open_clip ViT name also works)."""
    return list(_REGISTRY)


def _derive_entry(name: str) -> BackboneEntry:
    """An entry for an open_clip model name that is not registered."""
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        known = list_backbones() + open_clip.list_models()
        near = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(
            f"backbone must be one of {list_backbones()} or an open_clip model name, "
            f"got {name!r}{hint}"
        )
    vision = cfg.get("vision_cfg", {})
    if isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name"):
        raise ConfigError(
            f"backbone must be an open_clip ViT (the V-V path needs its attention blocks), "
            f"got {name!r}"
        )
    image_size = vision.get("image_size", 224)
    return BackboneEntry(
        name=name,
        pretrained=None,
        quick_gelu=bool(cfg.get("quick_gelu", False)),
        image_size=int(image_size if isinstance(image_size, int) else image_size[0]),
        patch_size=int(vision.get("patch_size", 16)),
        description="open_clip model",
    )


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name``, or one derived from open_clip's config for other ViTs.

    Raises:
        ConfigError: ``name`` is neither registered nor an open_clip ViT model name.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    return _derive_entry(name)


def default_vv_start(depth: int) -> int:
    """First V-V block for a ``depth``-block ViT: 6 of 24, scaled (``round(6/24 * depth)``, >= 1)."""
    return max(1, round(REFERENCE_VV_START / REFERENCE_VV_DEPTH * depth))


@dataclass(frozen=True)
class BackboneSpec:
    """Which backbone to load and how to read its features.

    Attributes:
        model_name: Registry or open_clip model name.
        pretrained: open_clip tag of the weights (downloaded or read from the Hugging Face cache);
            None = random initialisation (benchmarks, the tiny model). Ignored when ``weights`` is
            set.
        weights: Local weights file: a state dict (.pt/.pth/.bin, also ``{"state_dict": ...}``),
            safetensors, or OpenAI's original TorchScript archive (e.g. ``ViT-L-14-336px.pt``).
        vv_start: First dual (V-V) block, 1-based; None = ``round(6/24 * depth)`` (6 for ViT-L).
        layers: 1-based blocks whose V-V tokens are returned; empty or None = the last block.
        precision: auto (default: amp-bf16 on CUDA, fp32 elsewhere) | fp32 | amp-bf16 (fp32
            weights, image encoder under bf16 autocast; the text tower and head stay fp32) |
            bf16 | fp16 (weights are cast; LayerNorms run in fp32).
        seed: Seed of the random initialisation when no weights are loaded.
    """

    model_name: str = DEFAULT_BACKBONE
    pretrained: str | None = DEFAULT_PRETRAINED
    weights: str | None = None
    vv_start: int | None = None
    layers: tuple[int, ...] | None = None
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"backbone precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if self.weights is not None:
            object.__setattr__(self, "weights", str(self.weights))

    @classmethod
    def tiny(cls, **fields: Any) -> BackboneSpec:
        """The spec of the offline tiny model (random weights)."""
        return cls(model_name=TINY_NAME, pretrained=None, **fields)


def resolve_vv_layers(spec: BackboneSpec, depth: int) -> tuple[int, tuple[int, ...]]:
    """Check ``spec.vv_start`` and ``spec.layers`` against a ``depth``-block ViT.

    Returns:
        (vv_start, layers), both 1-based.

    Raises:
        ConfigError: A block index is outside 1..depth, repeated, or a layer lies before vv_start.
    """
    vv_start = default_vv_start(depth) if spec.vv_start is None else int(spec.vv_start)
    layers = tuple(spec.layers) if spec.layers else (depth,)
    if not 1 <= vv_start <= depth:
        raise ConfigError(f"backbone vv_start must be in 1..{depth}, got {vv_start}")
    bad = [x for x in layers if not 1 <= x <= depth]
    if bad:
        raise ConfigError(f"backbone layers must be in 1..{depth}, got {list(layers)}")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"backbone layers must not repeat, got {list(layers)}")
    early = [x for x in layers if x < vv_start]
    if early:
        raise ConfigError(
            f"backbone layers must be >= vv_start ({vv_start}): the V-V stream starts there, "
            f"got {list(layers)}; lower vv_start or drop {early}"
        )
    return vv_start, layers


for _entry in (
    BackboneEntry(
        DEFAULT_BACKBONE, "openai", True, 336, 14, sha256=_SHA_VIT_L14_336,
        description="OpenAI CLIP ViT-L/14@336px, the paper's backbone",
    ),
    BackboneEntry(
        "ViT-L-14-quickgelu", "openai", True, 224, 14, sha256=_SHA_VIT_L14,
        description="OpenAI CLIP ViT-L/14@224px",
    ),
    BackboneEntry(
        "ViT-B-16-quickgelu", "openai", True, 224, 16, sha256=_SHA_VIT_B16,
        description="OpenAI CLIP ViT-B/16 (a faster, weaker backbone)",
    ),
    BackboneEntry(
        TINY_NAME, None, True, 224, 16, random_init=True, model_cfg=TINY_MODEL_CFG,
        description="tiny random CLIP-shaped model for tests and the offline demo",
    ),
):
    register_backbone(_entry)

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_PRETRAINED",
    "PRECISIONS",
    "BackboneEntry",
    "BackboneSpec",
    "default_vv_start",
    "get_backbone_entry",
    "list_backbones",
    "register_backbone",
    "resolve_vv_layers",
]
