"""Build a frozen open_clip CLIP model from a :class:`BackboneSpec` (METHOD.md §3).

The architecture comes from open_clip's model config (or the tiny model's), the weights from an
open_clip tag, a local file, or a seeded random initialisation. The QuickGELU guard refuses OpenAI
weights on a GELU architecture instead of warning: that combination runs, but every feature is off.
Loading an fp32 backbone turns TF32 off process-wide (:func:`~.numerics.use_full_fp32`), so CUDA
features match the CPU's instead of differing by ~1e-3; bf16 and fp16 leave the flags alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from open_clip import CLIP, CustomTextCLIP
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import convert_weights_to_lp, get_cast_dtype

from ..device import resolve_device
from ..errors import ConfigError, WeightsNotFoundError
from .numerics import matmul_mode, use_full_fp32
from .registry import BackboneEntry, BackboneSpec, get_backbone_entry, resolve_vv_layers
from .weights import (
    HOW_TO_PROVIDE,
    check_reference_sha256,
    describe_tag,
    fetch_tag_weights,
    is_torchscript_archive,
    load_weights_into,
    parameter_fingerprint,
)

logger = logging.getLogger(__name__)

_LP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(eq=False)
class Backbone:
    """A loaded, frozen CLIP model and what downstream code needs to know about it.

    Attributes:
        clip: The open_clip model, in eval mode, every parameter ``requires_grad=False``.
        name: Registry / open_clip model name.
        spec: The spec it was loaded from.
        entry: Its registry entry.
        device: Where its weights live.
        dtype: Its weight dtype (float32, bfloat16 or float16).
        image_size: Input side S in pixels.
        patch_size: Patch side in pixels.
        depth: Number of vision blocks.
        embed_dim: Joint embedding width D.
        mean: Per-channel normalisation mean (RGB) of its training preprocessing.
        std: Per-channel normalisation std (RGB).
        fingerprint: Identity of the weights by content, ``params-sha256:<hex>`` (see
            :func:`~align3d_ad.backbone.weights.parameter_fingerprint`): the same whether they
            came from an open_clip tag or a local file of any format; or
            ``random-init:<name>:seed<k>``.
        is_random: True when the weights are a random initialisation (e.g. the tiny model): any
            output made with it is not comparable with published numbers.
        vv_start: First dual (V-V) block, 1-based, resolved for this depth.
        layers: 1-based blocks whose V-V tokens are returned.
        weights_path: The weights file read, or None.
        source: Where the weights came from, for people (``open_clip tag <name>/<tag>``, the file
            name, or ``random init (seed k)``).
    """

    clip: torch.nn.Module
    name: str
    spec: BackboneSpec
    entry: BackboneEntry
    device: torch.device
    dtype: torch.dtype
    image_size: int
    patch_size: int
    depth: int
    embed_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str
    is_random: bool
    vv_start: int
    layers: tuple[int, ...]
    weights_path: Path | None = None
    source: str = ""

    @property
    def grid_size(self) -> int:
        """Patches per image side (``image_size // patch_size``)."""
        return self.image_size // self.patch_size

    @property
    def precision(self) -> str:
        """The precision in force: ``spec.precision`` with ``auto`` resolved for the device."""
        return resolve_precision(self.spec.precision, self.device)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype the image encoder's forward autocasts to (``amp-bf16``), else None."""
        return torch.bfloat16 if self.precision == "amp-bf16" else None

    def key_parts(self) -> dict[str, object]:
        """Everything about the backbone that changes its image features (for cache keys).

        Besides the model and its weights: the precision, the float32 matmul / convolution mode in
        force now (:func:`~.numerics.matmul_mode`: TF32 or full fp32) and the device type, so
        features filled on one device or in one precision are never read for another.
        """
        return {
            "backbone": self.name,
            "weights": self.fingerprint,
            "layers": list(self.layers),
            "vv_start": self.vv_start,
            "precision": self.precision,
            "matmul": matmul_mode(),
            "device_type": self.device.type,
            "image_size": self.image_size,
        }


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``amp-bf16`` on CUDA (bf16 tensor cores), ``fp32`` elsewhere; others as given."""
    if precision != "auto":
        return precision
    return "amp-bf16" if device.type == "cuda" else "fp32"


def _quick_gelu_guard(entry: BackboneEntry, *, openai_weights: bool, source: str) -> None:
    """Refuse OpenAI (QuickGELU-trained) weights on an architecture built with nn.GELU."""
    if not openai_weights or entry.quick_gelu:
        return
    suggestion = entry.name if entry.name.endswith("-quickgelu") else f"{entry.name}-quickgelu"
    raise ConfigError(
        f"backbone {entry.name!r} must be a QuickGELU model for OpenAI weights ({source}), got a "
        f"GELU architecture; use model_name {suggestion!r} (e.g. ViT-L-14-336-quickgelu)"
    )


def _build_random(entry: BackboneEntry, precision: str, seed: int) -> torch.nn.Module:
    """The architecture of ``entry`` in fp32, randomly initialised from ``seed``."""
    cfg = entry.open_clip_config()
    model_class = CustomTextCLIP if cfg.pop("custom_text", False) else CLIP
    if "multimodal_cfg" in cfg:
        raise ConfigError(f"backbone must be a CLIP model, got the captioning model {entry.name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(**cfg, cast_dtype=get_cast_dtype(precision))
    return model


def _resolve_weights(
    spec: BackboneSpec, entry: BackboneEntry, *, cache_dir: str | Path | None, allow_download: bool
) -> tuple[Path | None, str]:
    """(weights file or None for random init, where they come from), after the QuickGELU guard."""
    if spec.weights is not None:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {path} must exist, got no such file; fix the path given with "
                f"--weights PATH"
            )
        _quick_gelu_guard(entry, openai_weights=is_torchscript_archive(path), source=f"{path.name}")
        return path, f"file {path.name}"
    if spec.pretrained:
        if entry.random_init:
            raise ConfigError(
                f"backbone {entry.name!r} has no pretrained weights; set pretrained to None"
            )
        tag_cfg = describe_tag(entry.name, spec.pretrained)
        openai = spec.pretrained == "openai" or bool(tag_cfg.get("quick_gelu"))
        _quick_gelu_guard(entry, openai_weights=openai, source=f"tag {spec.pretrained!r}")
        path = fetch_tag_weights(
            entry.name, spec.pretrained, cache_dir=cache_dir, allow_download=allow_download
        )
        return path, f"open_clip tag {entry.name}/{spec.pretrained}"
    return None, f"random init (seed {spec.seed})"


def load_backbone(
    spec: BackboneSpec | None = None,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    allow_download: bool = True,
) -> Backbone:
    """Load a frozen CLIP backbone.

    Args:
        spec: What to load; default: ViT-L-14-336-quickgelu with OpenAI weights.
        device: ``cpu``, ``cuda[:N]``, ``auto`` or a torch.device.
        cache_dir: Hugging Face / open_clip download cache; None = their defaults.
        allow_download: False = only cached or local weights, never the network.

    Returns:
        The loaded :class:`Backbone`.

    Raises:
        WeightsNotFoundError: Weights neither cached nor given (message names ``--weights PATH``),
            or the ``weights`` file is missing. Raised before any model is built.
        ConfigError: Unknown model or tag, bad vv_start/layers/precision, or OpenAI weights with a
            non-QuickGELU model name.
        CheckpointMismatchError: The weights do not fit the architecture.

    An fp32 or amp-bf16 backbone sets full fp32 for float32 matmuls and cuDNN convolutions
    process-wide (no TF32; :func:`~.numerics.use_full_fp32`). ``precision: auto`` (the default)
    is amp-bf16 on CUDA and fp32 elsewhere (:func:`resolve_precision`).
    """
    spec = spec or BackboneSpec()
    entry = get_backbone_entry(spec.model_name)
    dev = resolve_device(device)
    depth = int(entry.open_clip_config()["vision_cfg"]["layers"])
    vv_start, layers = resolve_vv_layers(spec, depth)
    path, source = _resolve_weights(
        spec, entry, cache_dir=cache_dir, allow_download=allow_download
    )
    precision = resolve_precision(spec.precision, dev)
    if precision in ("fp32", "amp-bf16"):  # amp-bf16: what runs outside autocast stays full fp32
        use_full_fp32()
    model = _build_random(entry, "fp32" if precision == "amp-bf16" else precision, spec.seed)
    fingerprint = f"random-init:{entry.name}:seed{spec.seed}"
    if path is not None:
        logger.info("loading backbone weights from %s", path)
        load_weights_into(model, path)
        if is_torchscript_archive(path):
            check_reference_sha256(path, entry.sha256, name=entry.name)
        fingerprint = parameter_fingerprint(model)  # before any precision change
    model = model.to(dev)
    if precision in _LP_DTYPES:
        convert_weights_to_lp(model, dtype=_LP_DTYPES[precision])
    model.eval().requires_grad_(False)
    visual = model.visual
    use_tag = spec.weights is None and spec.pretrained
    tag_cfg = describe_tag(entry.name, spec.pretrained) if use_tag else {}
    image_size = visual.image_size
    patch_size = visual.patch_size
    return Backbone(
        clip=model,
        name=entry.name,
        spec=spec,
        entry=entry,
        device=dev,
        dtype=visual.conv1.weight.dtype,
        image_size=int(image_size[0] if isinstance(image_size, tuple) else image_size),
        patch_size=int(patch_size[0] if isinstance(patch_size, tuple) else patch_size),
        depth=depth,
        embed_dim=int(visual.output_dim),
        mean=tuple(tag_cfg.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(tag_cfg.get("std", OPENAI_DATASET_STD)),
        fingerprint=fingerprint,
        is_random=path is None,
        vv_start=vv_start,
        layers=layers,
        weights_path=path,
        source=source,
    )


__all__ = ["HOW_TO_PROVIDE", "Backbone", "load_backbone"]
