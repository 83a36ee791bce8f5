"""Backbone registry, specs and the random-init loading path."""

from __future__ import annotations

import open_clip
import pytest
import torch

from align3d_ad.backbone import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    default_vv_start,
    get_backbone_entry,
    list_backbones,
    load_backbone,
    resolve_vv_layers,
)
from align3d_ad.errors import ConfigError


@pytest.mark.parametrize("name", list_backbones())
def test_registry_entry_agrees_with_its_open_clip_config(name):
    entry = get_backbone_entry(name)
    cfg = entry.open_clip_config()
    vision = cfg["vision_cfg"]
    assert vision["image_size"] == entry.image_size
    assert vision["patch_size"] == entry.patch_size
    assert bool(cfg.get("quick_gelu", False)) == entry.quick_gelu
    assert entry.grid_size * entry.patch_size == entry.image_size
    if entry.pretrained:
        tag_cfg = open_clip.get_pretrained_cfg(name, entry.pretrained)
        assert tag_cfg, f"{name}/{entry.pretrained} must be an open_clip tag"
        assert bool(tag_cfg.get("quick_gelu", False)) == entry.quick_gelu
        if entry.sha256:
            assert entry.sha256 in tag_cfg.get("url", "")


def test_registry_default_is_the_papers_backbone():
    entry = get_backbone_entry(DEFAULT_BACKBONE)
    assert (entry.name, entry.pretrained, entry.image_size, entry.patch_size) == (
        "ViT-L-14-336-quickgelu", "openai", 336, 14,
    )
    assert BackboneSpec().model_name == DEFAULT_BACKBONE and BackboneSpec().pretrained == "openai"


def test_registry_derives_entries_for_other_open_clip_vits_and_rejects_the_rest():
    derived = get_backbone_entry("ViT-B-16")
    assert (derived.image_size, derived.patch_size, derived.quick_gelu) == (224, 16, False)
    with pytest.raises(ConfigError, match="ViT-L-14-336"):
        get_backbone_entry("ViT-L-14-3366")
    with pytest.raises(ConfigError, match="ViT"):
        get_backbone_entry("RN50")


@pytest.mark.parametrize(("depth", "expected"), [(24, 6), (12, 3), (4, 1), (2, 1), (32, 8)])
def test_default_vv_start_scales_six_of_twenty_four(depth, expected):
    assert default_vv_start(depth) == expected


def test_resolve_vv_layers_defaults_and_errors():
    assert resolve_vv_layers(BackboneSpec(), 24) == (6, (24,))
    assert resolve_vv_layers(BackboneSpec(layers=()), 24) == (6, (24,))
    assert resolve_vv_layers(BackboneSpec(vv_start=20, layers=[21, 24]), 24) == (20, (21, 24))
    for bad in ({"vv_start": 0}, {"layers": (25,)}, {"layers": (24, 24)}, {"vv_start": 10, "layers": (6,)}):
        with pytest.raises(ConfigError, match="backbone"):
            resolve_vv_layers(BackboneSpec(**bad), 24)
    with pytest.raises(ConfigError, match="precision"):
        BackboneSpec(precision="fp8")


def test_load_random_is_frozen_deterministic_and_labelled():
    a = load_backbone(BackboneSpec.tiny(seed=5))
    b = load_backbone(BackboneSpec.tiny(seed=5))
    c = load_backbone(BackboneSpec.tiny(seed=6))
    pa, pb, pc = (dict(x.clip.named_parameters()) for x in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["visual.proj"], pc["visual.proj"])
    assert a.is_random and a.fingerprint == "random-init:tiny-clip:seed5"
    assert not a.clip.training and not any(p.requires_grad for p in a.clip.parameters())
    assert (a.image_size, a.patch_size, a.grid_size, a.depth, a.embed_dim) == (224, 16, 14, 4, 64)
    assert a.vv_start == 1 and a.layers == (4,)
    assert a.key_parts() == {
        "backbone": "tiny-clip", "weights": "random-init:tiny-clip:seed5", "layers": [4],
        "vv_start": 1, "precision": "fp32", "image_size": 224, "device_type": "cpu",
        "matmul": "highest,cuda-tf32=False,cudnn-tf32=False",  # an fp32 load sets full fp32
    }
    # loading does not disturb the global RNG
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_backbone(BackboneSpec.tiny(seed=9))
    assert torch.equal(torch.rand(3), expected)


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="pretrained"):
        load_backbone(BackboneSpec(model_name="tiny-clip", pretrained="openai"))
