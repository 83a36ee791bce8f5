"""What ``align3d-ad info`` reports about backbones: versions, devices, weights found. Never downloads."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import open_clip
import torch

from .registry import BackboneSpec, get_backbone_entry, list_backbones
from .weights import HOW_TO_PROVIDE, find_cached_weights, hub_offline


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
    return devices


def weights_status(spec: BackboneSpec, *, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Where the weights of ``spec`` would come from, without loading or downloading anything.

    Returns:
        {"source": "file" | "cache" | "download" | "random", "available": bool, "path": str|None,
        "detail": one line}.
    """
    if spec.weights is not None:
        path = Path(spec.weights).expanduser()
        ok = path.is_file()
        detail = "local file" if ok else f"local file {path} does not exist"
        return {"source": "file", "available": ok, "path": str(path), "detail": detail}
    if not spec.pretrained:
        return {
            "source": "random",
            "available": True,
            "path": None,
            "detail": f"random initialisation (seed {spec.seed}); results not comparable with "
            "published numbers",
        }
    found = find_cached_weights(spec.model_name, spec.pretrained, cache_dir=cache_dir)
    if found is not None:
        return {"source": "cache", "available": True, "path": str(found), "detail": "in the local cache"}
    offline = hub_offline()
    detail = "not cached; " + (
        "HF_HUB_OFFLINE is set, so " + HOW_TO_PROVIDE if offline
        else "will be downloaded on first use if the network allows, or " + HOW_TO_PROVIDE
    )
    return {"source": "download", "available": False, "path": None, "detail": detail}


def backbone_info(
    spec: BackboneSpec | None = None, *, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Versions, devices and the backbone's weights status, as a JSON-able dict.

    Args:
        spec: The backbone asked for (default: the default backbone).
        cache_dir: Hugging Face / open_clip cache to look in; None = their defaults.
    """
    spec = spec or BackboneSpec()
    entry = get_backbone_entry(spec.model_name)
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
        },
        "devices": _devices(),
        "hf_hub_offline": hub_offline(),
        "backbone": {
            "name": entry.name,
            "pretrained": None if spec.weights else spec.pretrained,
            "image_size": entry.image_size,
            "patch_size": entry.patch_size,
            "quick_gelu": entry.quick_gelu,
            "reference_sha256": entry.sha256,
            "precision": spec.precision,
        },
        "weights": weights_status(spec, cache_dir=cache_dir),
        "how_to_provide_weights": HOW_TO_PROVIDE,
        "known_backbones": {
            name: get_backbone_entry(name).description for name in list_backbones()
        },
    }


__all__ = ["backbone_info", "weights_status"]
