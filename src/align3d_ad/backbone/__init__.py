"""The frozen CLIP backbone: registry, weights, V-V image features, prompt-able text, feature cache.

METHOD.md §3 (backbone and V-V path) and §5 (deep text prompts); DESIGN.md "Backbone weights".

Examples:
    >>> from align3d_ad.backbone import BackboneSpec, ImageFeatureExtractor, load_backbone
    >>> backbone = load_backbone(BackboneSpec.tiny())
    >>> backbone.is_random, backbone.grid_size
    (True, 14)
"""

from .cache import FeatureCache
from .encode import ViewEncoder, ViewFeatures
from .image import ImageFeatureExtractor, ImageFeatures, preprocess_images, vv_attention
from .info import backbone_info, weights_status
from .loader import Backbone, load_backbone
from .registry import (
    DEFAULT_BACKBONE,
    DEFAULT_PRETRAINED,
    PRECISIONS,
    BackboneEntry,
    BackboneSpec,
    default_vv_start,
    get_backbone_entry,
    list_backbones,
    register_backbone,
    resolve_vv_layers,
)
from .text import PromptableTextEncoder
from .tiny import TINY_MODEL_CFG, TINY_NAME
from .weights import (
    HOW_TO_PROVIDE,
    file_fingerprint,
    find_cached_weights,
    is_torchscript_archive,
    parameter_fingerprint,
    read_state_dict,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_PRETRAINED",
    "HOW_TO_PROVIDE",
    "PRECISIONS",
    "TINY_MODEL_CFG",
    "TINY_NAME",
    "Backbone",
    "BackboneEntry",
    "BackboneSpec",
    "FeatureCache",
    "ImageFeatureExtractor",
    "ImageFeatures",
    "ViewEncoder",
    "ViewFeatures",
    "PromptableTextEncoder",
    "backbone_info",
    "default_vv_start",
    "file_fingerprint",
    "parameter_fingerprint",
    "find_cached_weights",
    "get_backbone_entry",
    "is_torchscript_archive",
    "list_backbones",
    "load_backbone",
    "preprocess_images",
    "read_state_dict",
    "register_backbone",
    "resolve_vv_layers",
    "vv_attention",
    "weights_status",
]
