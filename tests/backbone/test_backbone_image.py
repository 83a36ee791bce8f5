"""V-V image path of the frozen CLIP backbone (METHOD.md §3) on the tiny random model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align3d_ad.backbone import (
    BackboneSpec,
    ImageFeatureExtractor,
    load_backbone,
    preprocess_images,
    vv_attention,
)
from align3d_ad.errors import ConfigError, ShapeError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(BackboneSpec.tiny(vv_start=2, layers=(3, 4)))


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 224, 224, generator=gen)


@pytest.fixture(scope="module")
def feats_on(backbone, images):
    return ImageFeatureExtractor(backbone)(images)


@pytest.fixture(scope="module")
def feats_off(backbone, images):
    return ImageFeatureExtractor(backbone, vv=False)(images)


def _normalised(backbone, images):
    return preprocess_images(images, image_size=backbone.image_size, mean=backbone.mean, std=backbone.std)


def _reference_vv(block, h):
    """Per-head V-V attention written out from the block's raw weights."""
    width = h.shape[-1]
    attn = block.attn
    heads = attn.num_heads
    d = width // heads
    a = F.layer_norm(h, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    outs = []
    for i in range(heads):
        rows = slice(2 * width + i * d, 2 * width + (i + 1) * d)
        v = a @ attn.in_proj_weight[rows].T + attn.in_proj_bias[rows]
        weights = torch.softmax(v @ v.transpose(-1, -2) / d**0.5, dim=-1)
        outs.append(weights @ v)
    cat = torch.cat(outs, dim=-1)
    return cat @ attn.out_proj.weight.T + attn.out_proj.bias


def test_backbone_tiny_has_several_heads(backbone):
    # the per-head checks below mean something only with more than one head
    assert backbone.clip.visual.transformer.resblocks[0].attn.num_heads >= 2


def test_vv_attention_matches_per_head_reference(backbone, images):
    visual = backbone.clip.visual
    with torch.no_grad():
        h = visual._embeds(_normalised(backbone, images[:2]))
        block = visual.transformer.resblocks[1]
        torch.testing.assert_close(vv_attention(block, h), _reference_vv(block, h), atol=1e-5, rtol=1e-5)


def test_extractor_global_equals_encode_image(backbone, images, feats_on, feats_off):
    with torch.no_grad():
        ref = backbone.clip.encode_image(_normalised(backbone, images), normalize=True)
    torch.testing.assert_close(feats_on.global_, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats_off.global_, ref, atol=1e-5, rtol=0)


def test_extractor_vv_off_tokens_equal_forward_intermediates(backbone, images):
    feats = ImageFeatureExtractor(backbone, vv=False, layers=(2, 4))(images)
    visual = backbone.clip.visual
    with torch.no_grad():
        out = visual.forward_intermediates(
            _normalised(backbone, images), indices=[1, 3], normalize_intermediates=True,
            output_fmt="NLC", output_extra_tokens=True,
        )
    for i in range(2):
        seq = torch.cat([out["image_intermediates_prefix"][i], out["image_intermediates"][i]], dim=1)
        ref = F.normalize(seq @ visual.proj, dim=-1)
        torch.testing.assert_close(feats.tokens[:, i], ref, atol=1e-5, rtol=0)


def test_extractor_vv_tokens_follow_the_dual_stream_recursion(backbone, images, feats_on):
    """h_vv starts as the input of block vv_start; each dual block adds V-V attention of ln_1(h)."""
    feats = feats_on
    visual = backbone.clip.visual
    with torch.no_grad():
        h = visual._embeds(_normalised(backbone, images))
        h_vv, taken = None, {}
        for i, block in enumerate(visual.transformer.resblocks, start=1):
            if i == 2:
                h_vv = h.clone()
            if i >= 2:
                h_vv = h_vv + _reference_vv(block, h)
            h = block(h)
            taken[i] = h_vv
        for j, layer in enumerate((3, 4)):
            ref = F.normalize(visual.ln_post(taken[layer]) @ visual.proj, dim=-1)
            torch.testing.assert_close(feats.tokens[:, j], ref, atol=1e-5, rtol=0)


def test_extractor_vv_changes_tokens_but_not_global(feats_on, feats_off):
    on, off = feats_on, feats_off
    torch.testing.assert_close(on.global_, off.global_, atol=1e-6, rtol=0)
    assert (on.tokens - off.tokens).abs().max() > 1e-2


def test_extractor_shapes_grid_and_unit_norm(backbone, feats_on):
    g = ImageFeatureExtractor(backbone).grid_size
    feats = feats_on
    assert g == 224 // 16 == backbone.grid_size
    assert feats.global_.shape == (2, backbone.embed_dim)
    assert feats.tokens.shape == (2, 2, 1 + g * g, backbone.embed_dim)
    assert feats.patch_grid().shape == (2, 2, g, g, backbone.embed_dim)
    torch.testing.assert_close(feats.patch_grid()[:, :, 1, 2], feats.tokens[:, :, 1 + 1 * g + 2])
    torch.testing.assert_close(feats.tokens.norm(dim=-1), torch.ones(2, 2, 1 + g * g))
    assert feats.layers == (3, 4)


def test_extractor_batch_size_does_not_change_results(backbone, images, feats_on):
    whole, split = feats_on, ImageFeatureExtractor(backbone)(images, batch_size=1)
    torch.testing.assert_close(whole.tokens, split.tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.global_, split.global_, atol=1e-5, rtol=0)


def test_extractor_outputs_can_feed_autograd(backbone, images):
    feats = ImageFeatureExtractor(backbone)(images[:1])
    assert not feats.tokens.is_inference()
    weight = torch.ones(backbone.embed_dim, requires_grad=True)
    (feats.tokens @ weight).sum().backward()
    assert weight.grad is not None


def test_extractor_rejects_layers_before_vv_start(backbone):
    with pytest.raises(ConfigError, match="vv_start"):
        ImageFeatureExtractor(backbone, layers=(1,), vv_start=2)
    with pytest.raises(ShapeError, match="images"):
        ImageFeatureExtractor(backbone)(torch.rand(2, 3, 32, 16))


def test_preprocess_normalises_and_resizes_like_the_model():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    const = torch.full((1, 3, 448, 448), 0.7)
    out = preprocess_images(const, image_size=224, mean=mean, std=std)
    assert out.shape == (1, 3, 224, 224)
    expected = (0.7 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(out[0, :, 100, 37], expected)
    # a hard black/white edge upsampled with bicubic overshoots; the result stays in [0, 1]
    edge = torch.zeros(1, 3, 112, 112)
    edge[..., 56:] = 1.0
    up = preprocess_images(edge, image_size=224, mean=(0, 0, 0), std=(1, 1, 1))
    assert up.min() >= 0 and up.max() <= 1 and up[..., :50].max() == 0 and up[..., -50:].min() == 1
    # shrinking a fine checkerboard is antialiased: it averages to grey instead of aliasing
    checker = ((torch.arange(448)[:, None] + torch.arange(448)[None, :]) % 2).float().expand(1, 3, -1, -1)
    down = preprocess_images(checker, image_size=224, mean=(0, 0, 0), std=(1, 1, 1))
    assert (down[..., 8:-8, 8:-8] - 0.5).abs().max() < 0.05


def test_extractor_resizes_renderings_of_another_size(backbone):
    small = torch.rand(1, 3, 112, 112)
    feats = ImageFeatureExtractor(backbone)(small)
    assert feats.tokens.shape[2] == 1 + backbone.grid_size**2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_extractor_low_precision_close_to_fp32(images, feats_on, precision):
    low = load_backbone(BackboneSpec.tiny(vv_start=2, layers=(3, 4), precision=precision))
    assert low.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    ref = feats_on
    got = ImageFeatureExtractor(low)(images)
    assert got.tokens.dtype == low.dtype
    cos_g = (got.global_.float() * ref.global_).sum(-1)
    cos_t = (got.tokens.float() * ref.tokens).sum(-1)
    assert cos_g.min() > 0.99 and cos_t.mean() > 0.99


@pytest.mark.cuda
def test_extractor_cuda_matches_cpu(images):
    cpu = load_backbone(BackboneSpec.tiny())
    gpu = load_backbone(BackboneSpec.tiny(), device="cuda")
    a = ImageFeatureExtractor(cpu)(images)
    b = ImageFeatureExtractor(gpu)(images.cuda())
    assert b.tokens.device.type == "cuda"
    torch.testing.assert_close(b.tokens.cpu(), a.tokens, atol=1e-3, rtol=0)
    torch.testing.assert_close(b.global_.cpu(), a.global_, atol=1e-3, rtol=0)
