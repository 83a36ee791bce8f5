"""Tests of the learnable prompts (METHOD.md §5) and the fixed prompt ensembles (baseline)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip import tokenize
from torch import nn

from align3d_ad.model import PromptLearner, count_trainable, prompt_ensemble, zero_shot_text
from align3d_ad.model import clip_zero_shot as czs

VOCAB = 97  # the fake folds CLIP's token ids into a small table


class FakeTextEncoder(nn.Module):
    """Small frozen text encoder honouring the ``PromptableTextEncoder`` interface.

    Blocks are 1-based; before block j (deep_start <= j < deep_start + n_deep) positions 1..k are
    overwritten by deep_prompts[j - deep_start]. Each block mixes tokens causally (running mean), so
    the EOT output depends on every earlier position. Records the last call for inspection.
    """

    def __init__(self, *, width: int = 16, num_layers: int = 4, embed_dim: int = 8) -> None:
        super().__init__()
        self.width, self.num_layers, self.embed_dim, self.context_length = (
            width,
            num_layers,
            embed_dim,
            24,
        )
        self.table = nn.Parameter(torch.randn(VOCAB, width))
        self.pos = nn.Parameter(torch.randn(self.context_length, width) * 0.1)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers))
        self.proj = nn.Parameter(torch.randn(width, embed_dim))
        self.requires_grad_(False)
        self.calls: list[dict] = []

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return tokenize(texts, context_length=self.context_length)

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens % VOCAB]

    def forward(self, embeddings, eot_index, *, deep_prompts=None, deep_start=2):
        self.calls.append(
            {
                "embeddings": embeddings.detach().clone(),
                "eot": eot_index.clone(),
                "deep": deep_prompts,
                "deep_start": deep_start,
            }
        )
        x = embeddings + self.pos
        count = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)[None, :, None]
        n_deep = 0 if deep_prompts is None else deep_prompts.shape[0]
        for j, block in enumerate(self.blocks, start=1):
            if deep_start <= j < deep_start + n_deep:
                k = deep_prompts.shape[1]
                prompt = deep_prompts[j - deep_start].expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], prompt, x[:, 1 + k :]], dim=1)
            x = x + torch.tanh(block(x.cumsum(dim=1) / count))
        out = x[torch.arange(x.shape[0], device=x.device), eot_index.to(x.device)] @ self.proj
        return F.normalize(out, dim=-1)


def test_prompt_learner_vitl_parameter_count() -> None:
    enc = FakeTextEncoder(width=768, num_layers=12, embed_dim=4)
    learner = PromptLearner(enc)
    assert learner.deep_prompts.shape == (8, 4, 768)  # text blocks 2..9
    assert count_trainable(learner) == 12 * 768 * 2 + 4 * 768 * 8 == 43008
    assert set(learner.state_dict()) == {"ctx_normal", "ctx_anomalous", "deep_prompts"}
    # init N(0, 0.02)
    assert float(learner.ctx_normal.detach().std()) == pytest.approx(0.02, rel=0.05)
    assert float(learner.deep_prompts.detach().mean()) == pytest.approx(0.0, abs=2e-3)


def test_prompt_learner_only_own_params_trainable() -> None:
    enc = FakeTextEncoder()
    learner = PromptLearner(enc)
    assert [n for n, _ in learner.named_parameters()] == [
        "ctx_normal",
        "ctx_anomalous",
        "deep_prompts",
    ]
    text = learner()
    (text[0] @ torch.randn(8) + text[1] @ torch.randn(8)).backward()
    assert all(p.grad is None for p in enc.parameters())
    for p in learner.parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_prompt_learner_places_contexts_at_positions_1_to_n_ctx() -> None:
    enc = FakeTextEncoder()
    learner = PromptLearner(enc, n_ctx=5, deep_tokens=2)
    out = learner()
    assert out.shape == (2, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    call = enc.calls[-1]
    emb = call["embeddings"]
    torch.testing.assert_close(emb[0, 1:6], learner.ctx_normal.detach())
    torch.testing.assert_close(emb[1, 1:6], learner.ctx_anomalous.detach())
    tokens = tokenize(["X X X X X object.", "X X X X X damaged object."], context_length=24)
    plain = enc.token_embedding(tokens)
    torch.testing.assert_close(emb[:, 0], plain[:, 0])  # SOT
    torch.testing.assert_close(emb[:, 6:], plain[:, 6:])  # words, EOT, padding
    # EOT: SOT + 5 contexts + "object" "." -> 8; the anomalous prompt adds "damaged" -> 9
    assert call["eot"].tolist() == [8, 9]
    assert call["deep_start"] == 2 and call["deep"].shape == (3, 2, 16)


def test_prompt_learner_deep_prompts_change_output_and_clamp_depth() -> None:
    enc = FakeTextEncoder(num_layers=4)
    learner = PromptLearner(enc)  # deep_depth 9 clamped to blocks 2..4
    assert learner.deep_prompts.shape == (3, 4, 16)
    before = learner().detach()
    with torch.no_grad():
        learner.deep_prompts.add_(1.0)
    assert not torch.allclose(learner(), before)
    one_block = PromptLearner(FakeTextEncoder(num_layers=1))
    assert one_block.deep_prompts.numel() == 0
    one_block()
    assert one_block.text_encoder.calls[-1]["deep"] is None
    no_deep = PromptLearner(enc, deep_tokens=0)
    assert count_trainable(no_deep) == 2 * 12 * 16


def test_prompt_learner_state_dict_round_trip() -> None:
    enc = FakeTextEncoder()
    a, b = PromptLearner(enc), PromptLearner(enc)
    assert not torch.allclose(a(), b())
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(), b())


def test_prompt_learner_rejects_a_placeholder_of_several_tokens(monkeypatch) -> None:
    from align3d_ad.errors import Align3DError
    from align3d_ad.model import prompts

    monkeypatch.setattr(prompts, "PLACEHOLDER", "hello world")
    with pytest.raises(Align3DError, match="one token at positions 1..3"):
        PromptLearner(FakeTextEncoder(), n_ctx=3)


def test_prompt_ensemble_is_every_state_in_every_template() -> None:
    got = prompt_ensemble(["{}", "damaged {}"], object_name="cup", templates=["a {}.", "the {}!"])
    assert got == ["a cup.", "the cup!", "a damaged cup.", "the damaged cup!"]
    assert len(prompt_ensemble(czs.NORMAL_STATES)) == 7 * 21


def test_zero_shot_text_is_renormalised_mean_of_prompt_embeddings(monkeypatch) -> None:
    enc = FakeTextEncoder()
    monkeypatch.setattr(czs, "BATCH_SIZE", 2)  # exercise batching
    normal, anomalous, templates = ["{}", "perfect {}"], ["broken {}"], ["a {}.", "one {}", "my {}"]
    got = zero_shot_text(enc, normal_states=normal, anomalous_states=anomalous, templates=templates)
    assert len(enc.calls) == 3 + 2  # 6 normal prompts in 3 batches of 2, 3 anomalous in 2
    want = []
    for states in (normal, anomalous):
        prompts = prompt_ensemble(states, templates=templates)
        tokens = tokenize(prompts, context_length=24)
        emb = enc(enc.token_embedding(tokens), tokens.argmax(dim=-1))
        want.append(F.normalize(emb.mean(dim=0), dim=-1))
    torch.testing.assert_close(got, torch.stack(want))


@pytest.fixture(scope="module")
def tiny_text_encoder():
    from align3d_ad.backbone import BackboneSpec, PromptableTextEncoder, load_backbone

    backbone = load_backbone(BackboneSpec.tiny(), device="cpu")
    return backbone.clip, PromptableTextEncoder(backbone)


def test_prompt_learner_on_tiny_clip_equals_encode_text_for_placeholder_contexts(
    tiny_text_encoder,
) -> None:
    """Contexts set to the placeholder's own embedding and no deep prompts: plain CLIP text."""
    clip, enc = tiny_text_encoder
    learner = PromptLearner(enc, n_ctx=4, deep_tokens=0)
    tokens = enc.tokenize(["X X X X object.", "X X X X damaged object."])
    with torch.no_grad():
        x_embedding = enc.token_embedding(tokens)[0, 1]
        learner.ctx_normal.copy_(x_embedding.expand(4, -1))
        learner.ctx_anomalous.copy_(x_embedding.expand(4, -1))
        want = clip.encode_text(tokens, normalize=True)
        torch.testing.assert_close(learner(), want, atol=1e-5, rtol=1e-5)
        learner.ctx_anomalous.add_(torch.randn_like(learner.ctx_anomalous))
        assert not torch.allclose(learner()[1], want[1], atol=1e-3)


def test_prompt_learner_on_tiny_clip_trains_only_own_params(tiny_text_encoder) -> None:
    clip, enc = tiny_text_encoder
    learner = PromptLearner(enc)
    w = enc.width
    blocks = min(9, enc.num_layers) - 1
    assert count_trainable(learner) == 12 * w * 2 + 4 * w * blocks
    text = learner()
    assert text.shape == (2, enc.embed_dim)
    (text[0, 0] - text[1, 1]).backward()
    assert all(p.grad is None for p in clip.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in learner.parameters())


def test_zero_shot_text_on_tiny_clip_matches_encode_text(tiny_text_encoder) -> None:
    clip, enc = tiny_text_encoder
    normal, anomalous, templates = (
        ["{}", "perfect {}"],
        ["broken {}"],
        ["a {}.", "a photo of a {}."],
    )
    got = zero_shot_text(enc, normal_states=normal, anomalous_states=anomalous, templates=templates)
    want = []
    with torch.no_grad():
        for states in (normal, anomalous):
            tokens = enc.tokenize(prompt_ensemble(states, templates=templates))
            want.append(F.normalize(clip.encode_text(tokens, normalize=True).mean(dim=0), dim=-1))
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
def test_prompt_learner_on_cuda_matches_cpu() -> None:
    enc = FakeTextEncoder()
    learner = PromptLearner(enc)
    want = learner()
    enc_cuda = FakeTextEncoder().to("cuda")
    enc_cuda.load_state_dict(enc.state_dict())
    on_cuda = PromptLearner(enc_cuda)
    assert on_cuda.ctx_normal.device.type == "cuda"
    on_cuda.load_state_dict(learner.state_dict())
    got = on_cuda()
    got.sum().backward()
    assert on_cuda.deep_prompts.grad is not None
    torch.testing.assert_close(got.cpu(), want.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("n_ctx", "deep_tokens"), [(23, 0), (3, 23)])
def test_prompt_learner_refuses_more_tokens_than_the_text_encoder_holds(n_ctx, deep_tokens) -> None:
    from align3d_ad.errors import ConfigError

    encoder = FakeTextEncoder()  # 24 tokens: start-of-text plus at most 22 contexts
    with pytest.raises(ConfigError, match=r"^method\.n_ctx \(\d+\) and method\.deep_tokens \(\d+\) "
                       r"must be at most 22: the text encoder holds 24 tokens"):  # fmt: skip
        PromptLearner(encoder, n_ctx=n_ctx, deep_tokens=deep_tokens)
