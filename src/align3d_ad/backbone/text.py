"""A frozen CLIP text tower that accepts learned token embeddings and deep prompts (METHOD.md §5).

``forward`` is CLIP's ``encode_text`` from the token-embedding step on: it takes embeddings instead
of token ids (so learnable context vectors can stand in for words), and before text block j
(1-based, j = deep_start .. deep_start + n_deep - 1) it overwrites the hidden states of sequence
positions 1..k with ``deep_prompts[j - deep_start]``. With plain token embeddings and no deep
prompts it equals ``clip.encode_text(tokens, normalize=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_shape
from ..errors import ConfigError, ShapeError
from .loader import Backbone


def _text_tower(clip: nn.Module) -> nn.Module:
    """The module holding the text tower's parts (CLIP keeps them on itself, others on .text)."""
    text = getattr(clip, "text", None)
    return text if text is not None and hasattr(text, "transformer") else clip


class PromptableTextEncoder(nn.Module):
    """CLIP's frozen text encoder, prompt-able (METHOD.md §5).

    Args:
        backbone: A loaded :class:`~align3d_ad.backbone.Backbone`.

    Attributes:
        width: W, the text transformer width (token-embedding size).
        num_layers: Number of text blocks.
        context_length: T of the tokenizer (77 for CLIP).
        embed_dim: D, the joint embedding width.

    Every CLIP parameter has ``requires_grad=False``: gradients reach only the tensors passed to
    :meth:`forward`. The tower is registered as a submodule (so ``.to()`` moves it); hold this
    encoder by reference in trainable modules to keep it out of their state dicts.
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        tower = _text_tower(backbone.clip)
        if getattr(tower, "cls_emb", None) is not None:
            raise ConfigError(f"backbone text tower must be CLIP-style, got CoCa-style {backbone.name!r}")
        if not getattr(tower.transformer, "batch_first", True):
            raise ConfigError(f"backbone text transformer must be batch-first, got {backbone.name!r}")
        self.transformer = tower.transformer
        self.token_embedder = tower.token_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.positional_embedding = tower.positional_embedding
        mask = getattr(backbone.clip, "attn_mask", None)
        if mask is None:
            mask = getattr(tower, "attn_mask", None)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.pool_type = getattr(backbone.clip, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        self.eos_id = getattr(backbone.clip, "text_eos_id", getattr(tower, "eos_id", None))
        if self.pool_type not in ("argmax", "eos"):
            raise ConfigError(
                f"backbone text pooling must be argmax or eos (EOT pooling), got {self.pool_type!r}"
            )
        self.width = int(self.token_embedder.weight.shape[1])
        self.num_layers = len(self.transformer.resblocks)
        self.context_length = int(self.positional_embedding.shape[0])
        self.embed_dim = int(backbone.embed_dim)
        self._tokenizer = self._make_tokenizer(backbone)
        for p in self.parameters():
            p.requires_grad_(False)

    def _make_tokenizer(self, backbone: Backbone):
        if backbone.entry.model_cfg is not None:  # not an open_clip name: CLIP's BPE tokenizer
            return open_clip.SimpleTokenizer(context_length=self.context_length)
        return open_clip.get_tokenizer(backbone.name, context_length=self.context_length)

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids (K, T) long, on the encoder's device (open_clip's tokenizer, offline)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        tokens = self._tokenizer(texts, context_length=self.context_length)
        return tokens.to(device=self.token_embedder.weight.device, dtype=torch.long)

    def token_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """(K, T) token ids -> (K, T, W) token embeddings (frozen, in the blocks' dtype)."""
        emb = self.token_embedder(tokens.to(self.token_embedder.weight.device))
        return emb.to(self.transformer.get_cast_dtype())

    def eot_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """(K,) position of each sequence's end-of-text token (what CLIP pools)."""
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)

    def _insert(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """Overwrite positions 1..k of every sequence of x (K, T, W) with prompt (k, W)."""
        k = prompt.shape[0]
        expanded = prompt.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :1], expanded, x[:, 1 + k :]], dim=1)

    def forward(
        self,
        embeddings: torch.Tensor,
        eot_index: torch.Tensor,
        *,
        deep_prompts: torch.Tensor | None = None,
        deep_start: int = 2,
    ) -> torch.Tensor:
        """Encode K prompt sequences given as embeddings.

        Args:
            embeddings: (K, T, W) token embeddings (learnable parts included), T <= context length.
            eot_index: (K,) long, position of each sequence's end-of-text token.
            deep_prompts: (n_deep, k, W) hidden states written over positions 1..k before text
                blocks deep_start .. deep_start + n_deep - 1 (1-based), the same for all K; None or
                n_deep = 0 for none.
            deep_start: First block (1-based) that receives deep prompts.

        Returns:
            (K, D) L2-normalised text embeddings in the dtype of ``embeddings``.
        """
        k_seq, t_len = check_shape(embeddings, f"K T {self.width}", name="embeddings").values()
        check_shape(eot_index, f"{k_seq}", name="eot_index")
        if t_len > self.context_length:
            raise ShapeError(f"embeddings must have T <= {self.context_length}, got T = {t_len}")
        n_deep = 0
        if deep_prompts is not None:
            n_deep, k_tok = check_shape(deep_prompts, f"D K {self.width}", name="deep_prompts").values()
            last = deep_start + n_deep - 1
            if n_deep and (deep_start < 1 or last > self.num_layers or 1 + k_tok > t_len):
                raise ShapeError(
                    f"deep prompts must target blocks within 1..{self.num_layers} and positions "
                    f"within 1..{t_len - 1}, got blocks {deep_start}..{last} and k = {k_tok}"
                )
        dtype = self.transformer.get_cast_dtype()
        x = embeddings.to(dtype) + self.positional_embedding[:t_len].to(dtype)
        mask = None if self.attn_mask is None else self.attn_mask[:t_len, :t_len]
        for j, block in enumerate(self.transformer.resblocks, start=1):
            if n_deep and deep_start <= j < deep_start + n_deep:
                x = self._insert(x, deep_prompts[j - deep_start])
            x = block(x, attn_mask=mask)
        x = self.ln_final(x)
        pooled = x[torch.arange(k_seq, device=x.device), eot_index.to(x.device).long()]
        if isinstance(self.text_projection, nn.Linear):
            pooled = self.text_projection(pooled)
        elif self.text_projection is not None:
            pooled = pooled @ self.text_projection
        return F.normalize(pooled.float(), dim=-1).to(embeddings.dtype)


__all__ = ["PromptableTextEncoder"]
