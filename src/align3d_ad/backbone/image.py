"""The frozen image encoder with AnomalyCLIP's V-V ("DPAM") path (METHOD.md §3).

From the first dual block on, a second residual stream h_vv runs beside the original stream h. In
every dual block the original stream's layer-normed input a = ln_1(h) is projected to values
(the block's own in-projection, value slice, with bias); per head vv = softmax(v vᵀ / sqrt(d)) v;
the block's output projection (and layer scale) follows, and h_vv <- h_vv + vv, without the MLP.
The original stream runs the block unchanged, so the global embedding is standard CLIP's.

Outputs, all L2-normalised: per image a global vector ln_post(CLS of h) @ proj and, for each
requested block L, the token sequence ln_post(h_vv after L) @ proj (CLS at position 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_shape
from ..errors import ConfigError, ShapeError
from .loader import Backbone


@dataclass(frozen=True)
class ImageFeatures:
    """Image features of M images.

    Attributes:
        global_: (M, D) global embeddings, L2-normalised.
        tokens: (M, L, 1+P, D) token embeddings of the L requested blocks, CLS first, then the
            P = G*G patches in row-major order; L2-normalised.
        layers: The L requested blocks (1-based).
        grid_size: G, patches per side.
    """

    global_: torch.Tensor
    tokens: torch.Tensor
    layers: tuple[int, ...]
    grid_size: int

    @property
    def patch_tokens(self) -> torch.Tensor:
        """(M, L, P, D) tokens without CLS."""
        return self.tokens[:, :, 1:]

    def patch_grid(self) -> torch.Tensor:
        """(M, L, G, G, D) patch tokens on their grid (row = image row)."""
        m, n_layers, _, d = self.tokens.shape
        g = self.grid_size
        return self.patch_tokens.reshape(m, n_layers, g, g, d)


def preprocess_images(
    images: torch.Tensor,
    *,
    image_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """CLIP preprocessing of float RGB images in [0, 1], done as the model's own transform does.

    A rendered image that is not ``image_size`` square is resized with bicubic interpolation
    (antialiased when shrinking, as open_clip's torchvision Resize does) and clamped to [0, 1]
    (PIL's uint8 round trip clamps too); then ``(x - mean) / std`` per channel.

    Args:
        images: (M, 3, S, S) float in [0, 1].
        image_size: The backbone's input side.
        mean: Channel means (RGB).
        std: Channel standard deviations (RGB).

    Returns:
        (M, 3, image_size, image_size) float32 on the input's device.
    """
    size = check_shape(images, "M 3 S S", name="images")["S"]
    x = images.float()
    if size != image_size:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bicubic", align_corners=False,
            antialias=size > image_size,
        ).clamp_(0.0, 1.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def vv_attention(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The V-V increment of one dual block: out_proj(softmax(v vᵀ/√d) v) with v from ln_1(h).

    Args:
        block: An open_clip ``ResidualAttentionBlock`` (``nn.MultiheadAttention`` inside).
        h: (M, T, W) input of the block on the original stream.

    Returns:
        (M, T, W) the quantity added to h_vv.
    """
    attn = block.attn
    width = h.shape[-1]
    a = block.ln_1(h)
    w_v = attn.in_proj_weight[2 * width:] if attn._qkv_same_embed_dim else attn.v_proj_weight
    b_v = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    m, t, _ = a.shape
    heads = attn.num_heads
    v = F.linear(a, w_v, b_v).view(m, t, heads, width // heads).transpose(1, 2)  # (M, H, T, d)
    vv = F.scaled_dot_product_attention(v, v, v)  # scale 1/sqrt(d)
    vv = vv.transpose(1, 2).reshape(m, t, width)
    return block.ls_1(attn.out_proj(vv))


def _check_supported(visual: nn.Module, name: str) -> None:
    """The V-V path needs a standard open_clip ViT (MHA blocks, batch first, no attention pool)."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "_embeds"):
        raise ConfigError(f"backbone must be an open_clip ViT for the V-V path, got {name!r}")
    if not all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks):
        raise ConfigError(
            f"backbone blocks must be open_clip ResidualAttentionBlocks for the V-V path, got "
            f"custom blocks in {name!r}"
        )
    if not getattr(visual.transformer, "batch_first", True) or visual.attn_pool is not None:
        raise ConfigError(
            f"backbone must be a batch-first ViT without attention pooling, got {name!r}"
        )


class ImageFeatureExtractor(nn.Module):
    """Global and (V-V) token features of a frozen CLIP ViT (METHOD.md §3).

    Args:
        backbone: A loaded :class:`~align3d_ad.backbone.Backbone`.
        layers: 1-based blocks whose tokens are returned; None = ``backbone.layers``.
        vv_start: First dual block, 1-based; None = ``backbone.vv_start``.
        vv: False = tokens of the original stream (standard CLIP intermediates), for checks and
            ablations.

    The module holds the vision tower by reference (it is the backbone's); nothing is trainable.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        layers: tuple[int, ...] | None = None,
        vv_start: int | None = None,
        vv: bool = True,
    ) -> None:
        super().__init__()
        visual = backbone.clip.visual
        _check_supported(visual, backbone.name)
        self.visual = visual
        self.vv = vv
        self.image_size = backbone.image_size
        self.mean, self.std = backbone.mean, backbone.std
        self.autocast_dtype = backbone.autocast_dtype  #: bf16 under ``amp-bf16``, else None
        self.layers = tuple(layers) if layers else backbone.layers
        self.vv_start = backbone.vv_start if vv_start is None else int(vv_start)
        self._grid = backbone.grid_size
        depth = len(visual.transformer.resblocks)
        if not all(1 <= x <= depth for x in self.layers) or not 1 <= self.vv_start <= depth:
            raise ConfigError(
                f"layers and vv_start must be in 1..{depth}, got {self.layers}, {self.vv_start}"
            )
        if vv and min(self.layers) < self.vv_start:
            raise ConfigError(
                f"layers must be >= vv_start ({self.vv_start}) on the V-V path, got {self.layers}"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side G, so that P = G*G patch tokens reshape to (G, G)."""
        return self._grid

    @torch.inference_mode()
    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.visual
        weight = visual.conv1.weight
        x = preprocess_images(images, image_size=self.image_size, mean=self.mean, std=self.std)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):  # fmt: skip
            global_, tokens = self._blocks(x.to(device=weight.device, dtype=weight.dtype))
        out_dtype = weight.dtype
        return (
            F.normalize(global_.float(), dim=-1).to(out_dtype),
            F.normalize(tokens.float(), dim=-1).to(out_dtype),
        )

    def _blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global and V-V token projections (not normalised) of preprocessed images."""
        visual = self.visual
        h = visual._embeds(x)
        h_vv = None
        taken: dict[int, torch.Tensor] = {}
        for i, block in enumerate(visual.transformer.resblocks, start=1):
            if self.vv and i >= self.vv_start:
                h_vv = (h if h_vv is None else h_vv) + vv_attention(block, h)
            h = block(h)
            if i in self.layers:
                taken[i] = h_vv if self.vv else h
        stacked = torch.stack([taken[i] for i in self.layers], dim=1)  # (M, L, T, W)
        tokens = visual.ln_post(stacked) @ visual.proj
        pooled, _ = visual._pool(h)
        return pooled @ visual.proj, tokens

    def forward(self, images: torch.Tensor, *, batch_size: int | None = None) -> ImageFeatures:
        """Encode M images.

        Args:
            images: (M, 3, S, S) float RGB in [0, 1] (any S; resized to the backbone's size).
            batch_size: Images per forward pass; None = all at once.

        Returns:
            :class:`ImageFeatures` in the backbone's dtype and device. They are ordinary tensors
            (computed under ``torch.inference_mode`` and copied out), so they can feed training.
        """
        if check_shape(images, "M 3 S S", name="images")["M"] == 0:
            raise ShapeError("images must hold at least one image, got shape (0, 3, S, S)")
        step = batch_size or images.shape[0]
        globals_, tokens = [], []
        for start in range(0, images.shape[0], step):
            g, t = self._encode(images[start : start + step])
            globals_.append(g)
            tokens.append(t)
        # cat outside inference mode copies into ordinary tensors (inference tensors cannot be
        # saved for backward, so they could not feed an aligner directly)
        return ImageFeatures(
            global_=torch.cat(globals_),
            tokens=torch.cat(tokens),
            layers=self.layers,
            grid_size=self._grid,
        )


__all__ = ["ImageFeatureExtractor", "ImageFeatures", "preprocess_images", "vv_attention"]
