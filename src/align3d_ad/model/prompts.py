"""Object-agnostic learnable text prompts (AnomalyCLIP-style), one learner per branch.

METHOD.md §5: the normal prompt "[V1..V12] object." and the anomalous prompt "[W1..W12] damaged
object." each get their own 12 learnable context embeddings, placed where 12 placeholder tokens sit
after tokenisation (SOT at position 0, so the contexts fill positions 1..12). Deep text prompts:
4 learnable tokens, shared by both states, overwrite the hidden states of sequence positions 1..4
before text blocks 2..9 (1-based, depth 9). Everything is initialised N(0, 0.02), drawn from the CPU
generator whatever the device (so a seed gives the same start on CPU and CUDA); the text encoder is
frozen and is not part of the learner's parameters or state dict.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch
from torch import nn

from ..errors import Align3DError, ConfigError, ShapeError

logger = logging.getLogger(__name__)

#: Learnable context embeddings per state (METHOD.md §5, "[V1..V12]").
N_CTX = 12
#: Learnable deep-prompt tokens per text block (METHOD.md §5, "4 learnable tokens").
DEEP_TOKENS = 4
#: Last text block (1-based) that receives deep prompts (METHOD.md §5, "depth 9").
DEEP_DEPTH = 9
#: First text block (1-based) that receives deep prompts (METHOD.md §5, "text blocks 2..9").
DEEP_START = 2
#: Standard deviation of the N(0, σ²) initialisation (METHOD.md §5, "init N(0, 0.02)").
INIT_STD = 0.02
#: Placeholder word whose token positions the learnable contexts take (tokenises to one token).
PLACEHOLDER = "X"
#: State words around the contexts (METHOD.md §5).
NORMAL_TEMPLATE = "object."
ANOMALOUS_TEMPLATE = "damaged object."


class TextEncoder(Protocol):
    """What :class:`PromptLearner` needs of ``align3d_ad.backbone.PromptableTextEncoder``."""

    width: int
    num_layers: int
    context_length: int
    embed_dim: int

    def tokenize(self, texts: list[str]) -> torch.Tensor: ...  # (K, T) long

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor: ...  # (K, T, W)

    def __call__(
        self,
        embeddings: torch.Tensor,
        eot_index: torch.Tensor,
        *,
        deep_prompts: torch.Tensor | None = None,
        deep_start: int = DEEP_START,
    ) -> torch.Tensor: ...  # (K, D)


def eot_positions(text_encoder: TextEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """(K,) end-of-text positions: the encoder's ``eot_index`` if it has one, else CLIP's argmax.

    CLIP's EOT token has the largest id of its vocabulary, so argmax finds it.
    """
    finder = getattr(text_encoder, "eot_index", None)
    return finder(tokens) if callable(finder) else tokens.argmax(dim=-1)


def deep_prompt_blocks(deep_depth: int, num_layers: int) -> int:
    """Number of text blocks DEEP_START..min(deep_depth, num_layers) that get deep prompts.

    Small encoders (fewer than ``deep_depth`` blocks) are clamped to their depth; 0 means none.
    """
    return max(0, min(deep_depth, num_layers) - DEEP_START + 1)


class PromptLearner(nn.Module):
    """Learnable [t_n, t_a] text embeddings of one branch (METHOD.md §5).

    Args:
        text_encoder: A frozen prompt-able text encoder (``PromptableTextEncoder``). It is held by
            reference, not registered as a submodule: ``parameters()`` and ``state_dict()`` hold only
            ``ctx_normal`` (n_ctx, W), ``ctx_anomalous`` (n_ctx, W) and ``deep_prompts``
            (n_deep, deep_tokens, W). Move the encoder and the learner to the same device yourself.
            Its parameters are set to ``requires_grad=False``.
        n_ctx: Learnable context embeddings per state.
        deep_tokens: Deep-prompt tokens per block (positions 1..deep_tokens); 0 disables them.
        deep_depth: Last 1-based text block with deep prompts; clamped to the encoder's depth, so
            n_deep = min(deep_depth, num_layers) - 1 blocks (8 for CLIP's 12-block text tower).
        init_std: σ of the N(0, σ²) initialisation.
        normal_template: Words after the normal contexts.
        anomalous_template: Words after the anomalous contexts.

    For ViT-L/14 (W = 768, 12 text blocks) the defaults give 12·768·2 + 4·768·8 = 43,008 parameters.
    """

    def __init__(
        self,
        text_encoder: TextEncoder,
        *,
        n_ctx: int = N_CTX,
        deep_tokens: int = DEEP_TOKENS,
        deep_depth: int = DEEP_DEPTH,
        init_std: float = INIT_STD,
        normal_template: str = NORMAL_TEMPLATE,
        anomalous_template: str = ANOMALOUS_TEMPLATE,
    ) -> None:
        super().__init__()
        if n_ctx < 1 or deep_tokens < 0 or init_std < 0:
            raise ConfigError(
                "method.n_ctx must be >= 1, method.deep_tokens >= 0 and init_std >= 0, "
                f"got {n_ctx}, {deep_tokens}, {init_std}"
            )
        if isinstance(text_encoder, nn.Module):
            text_encoder.requires_grad_(False)
        self._encoder = (text_encoder,)  # a tuple: not registered, not saved
        self.n_ctx = n_ctx
        width = int(text_encoder.width)
        if 1 + max(n_ctx, deep_tokens) >= text_encoder.context_length:
            raise ConfigError(
                f"method.n_ctx ({n_ctx}) and method.deep_tokens ({deep_tokens}) must be at most "
                f"{text_encoder.context_length - 2}: the text encoder holds "
                f"{text_encoder.context_length} tokens, start-of-text included"
            )
        tokens = self._tokenize([normal_template, anomalous_template])
        with torch.no_grad():
            embedded = text_encoder.token_embedding(tokens).detach()  # (2, T, W)
        self.register_buffer("token_embeddings", embedded, persistent=False)
        eot = eot_positions(text_encoder, tokens).to(embedded.device)
        self.register_buffer("eot_index", eot, persistent=False)
        n_deep = deep_prompt_blocks(deep_depth, text_encoder.num_layers) if deep_tokens else 0
        if deep_depth > text_encoder.num_layers:
            logger.debug(
                "deep_depth %d clamped to %d text blocks", deep_depth, text_encoder.num_layers
            )

        def init(*shape: int) -> nn.Parameter:
            # drawn from the CPU generator, then moved: the same seed gives the same start on
            # every device (a CUDA generator would draw other values)
            values = torch.empty(*shape, dtype=torch.float32).normal_(0, init_std)
            return nn.Parameter(values.to(embedded.device))

        self.ctx_normal = init(n_ctx, width)
        self.ctx_anomalous = init(n_ctx, width)
        self.deep_prompts = init(n_deep, deep_tokens, width)

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen text encoder this learner feeds (not a submodule)."""
        return self._encoder[0]

    def _tokenize(self, templates: list[str]) -> torch.Tensor:
        """Tokenise "X X ... X <template>" and check the placeholders sit at positions 1..n_ctx."""
        prefix = " ".join([PLACEHOLDER] * self.n_ctx)
        tokens = self.text_encoder.tokenize([f"{prefix} {t}" for t in templates])
        if tokens.dim() != 2 or tokens.shape[0] != len(templates):
            raise ShapeError(f"tokenize must return (K, T) tokens, got {tuple(tokens.shape)}")
        slots = tokens[:, 1 : 1 + self.n_ctx]
        if not bool((slots == slots[:, :1]).all()) or bool((slots[:, 0] == tokens[:, 0]).any()):
            raise Align3DError(
                f"placeholder {PLACEHOLDER!r} must tokenise to one token at positions 1..{self.n_ctx}, "
                f"got {tokens[:, : 2 + self.n_ctx].tolist()}"
            )
        return tokens

    def forward(self) -> torch.Tensor:
        """Encode the two prompts.

        Returns:
            [t_n, t_a], (2, D), L2-normalised, in the encoder's output dtype.
        """
        emb = self.token_embeddings
        ctx = torch.stack([self.ctx_normal, self.ctx_anomalous]).to(emb.dtype)  # (2, n_ctx, W)
        prompts = torch.cat([emb[:, :1], ctx, emb[:, 1 + self.n_ctx :]], dim=1)
        deep = self.deep_prompts.to(emb.dtype) if self.deep_prompts.numel() else None
        return self.text_encoder(prompts, self.eot_index, deep_prompts=deep, deep_start=DEEP_START)


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalars of ``module`` (e.g. 43,008 for a ViT-L prompt learner)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "ANOMALOUS_TEMPLATE",
    "DEEP_DEPTH",
    "DEEP_START",
    "DEEP_TOKENS",
    "INIT_STD",
    "NORMAL_TEMPLATE",
    "N_CTX",
    "PLACEHOLDER",
    "PromptLearner",
    "TextEncoder",
    "count_trainable",
    "deep_prompt_blocks",
    "eot_positions",
]
