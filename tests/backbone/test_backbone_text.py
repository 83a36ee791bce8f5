"""Prompt-able frozen CLIP text encoder (METHOD.md §5) on the tiny random model."""

from __future__ import annotations

import pytest
import torch

from align3d_ad.backbone import BackboneSpec, PromptableTextEncoder, load_backbone
from align3d_ad.errors import ShapeError

TEXTS = ["a photo of a damaged object.", "object.", "a flawless object with no defect at all"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(BackboneSpec.tiny())


@pytest.fixture(scope="module")
def encoder(backbone):
    return PromptableTextEncoder(backbone)


def test_text_encoder_attributes(encoder, backbone):
    assert encoder.width == 64 and encoder.num_layers == 6
    assert encoder.context_length == 77 and encoder.embed_dim == backbone.embed_dim


def test_tokenize_is_clips_bpe_offline(encoder):
    tokens = encoder.tokenize(TEXTS)
    assert tokens.shape == (3, 77) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 49406).all()  # <start_of_text>
    eot = encoder.eot_index(tokens)
    assert (tokens[torch.arange(3), eot] == 49407).all()  # <end_of_text>
    assert eot[1] == 3  # "object ." -> SOT, object, ., EOT


def test_text_encoder_plain_embeddings_equal_encode_text(encoder, backbone):
    tokens = encoder.tokenize(TEXTS)
    got = encoder(encoder.token_embedding(tokens), encoder.eot_index(tokens))
    with torch.no_grad():
        ref = backbone.clip.encode_text(tokens, normalize=True)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # a shorter sequence (first T positions) gives the same result: the causal mask hides the rest
    short = encoder(encoder.token_embedding(tokens)[:, :20], encoder.eot_index(tokens))
    torch.testing.assert_close(short, ref, atol=1e-5, rtol=0)


def test_text_encoder_gradients_reach_only_passed_tensors(encoder, backbone):
    tokens = encoder.tokenize(TEXTS[:2])
    emb = encoder.token_embedding(tokens).detach().clone().requires_grad_(True)
    deep = torch.zeros(3, 4, encoder.width).normal_(0, 0.02).requires_grad_(True)
    out = encoder(emb, encoder.eot_index(tokens), deep_prompts=deep)
    out[:, 0].sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert deep.grad is not None and deep.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.clip.parameters())


def test_deep_prompts_overwrite_positions_one_to_k_before_their_blocks(encoder):
    tokens = encoder.tokenize(TEXTS)
    emb = encoder.token_embedding(tokens)
    eot = encoder.eot_index(tokens)
    k, start = 2, 2
    deep = torch.randn(3, k, encoder.width)  # blocks 2, 3, 4
    inputs, outputs = {}, {}
    hooks = []
    for j, block in enumerate(encoder.transformer.resblocks, start=1):
        hooks.append(block.register_forward_pre_hook(
            lambda mod, args, kw, j=j: inputs.__setitem__(j, args[0].detach().clone()), with_kwargs=True
        ))
        hooks.append(block.register_forward_hook(
            lambda mod, args, out, j=j: outputs.__setitem__(j, out.detach().clone())
        ))
    try:
        with torch.no_grad():
            with_deep = encoder(emb, eot, deep_prompts=deep, deep_start=start)
    finally:
        for h in hooks:
            h.remove()
    for j in range(2, 7):
        prev = outputs[j - 1]
        if start <= j < start + 3:
            assert torch.equal(inputs[j][:, 1 : 1 + k], deep[j - start].expand(3, -1, -1))
            assert torch.equal(inputs[j][:, 0], prev[:, 0])
            assert torch.equal(inputs[j][:, 1 + k :], prev[:, 1 + k :])
        else:
            assert torch.equal(inputs[j], prev)
    with torch.no_grad():
        plain = encoder(emb, eot)
    assert (with_deep - plain).abs().max() > 1e-3


def test_deep_prompts_out_of_range_raise(encoder):
    tokens = encoder.tokenize(TEXTS[:1])
    emb, eot = encoder.token_embedding(tokens), encoder.eot_index(tokens)
    with pytest.raises(ShapeError, match="deep prompts"):
        encoder(emb, eot, deep_prompts=torch.zeros(6, 4, encoder.width), deep_start=2)
    with pytest.raises(ShapeError, match="embeddings"):
        encoder(emb[..., :10], eot)
    empty = encoder(emb, eot, deep_prompts=torch.zeros(0, 4, encoder.width))
    torch.testing.assert_close(empty, encoder(emb, eot))


def test_text_encoder_bf16_output_follows_embedding_dtype(encoder):
    low = PromptableTextEncoder(load_backbone(BackboneSpec.tiny(precision="bf16")))
    tokens = low.tokenize(TEXTS)
    emb = encoder.token_embedding(tokens)  # fp32, as learnable prompts are
    got = low(emb, low.eot_index(tokens))
    assert got.dtype == torch.float32
    ref = encoder(emb, encoder.eot_index(tokens))
    assert (got * ref).sum(-1).min() > 0.99
