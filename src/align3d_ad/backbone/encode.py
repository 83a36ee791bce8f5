"""Render -> encode -> cache: the image features of every view of a sample, computed once.

The image encoder is frozen (METHOD.md §3), so the features of (sample, views, image size, splat
settings, render mode, backbone, weights, layers, V-V start, precision, float32 matmul mode, device
type) never change: they are computed once, stored in the
:class:`~align3d_ad.backbone.FeatureCache` (fp16) and read back by every later epoch, test and
prediction.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..data.sample import PointCloudSample
from ..render import Rendering, RenderSettings, ViewPreset, render_samples
from .cache import FeatureCache
from .image import ImageFeatureExtractor
from .loader import Backbone

logger = logging.getLogger(__name__)

GEOMETRY = "geometry"
COLOUR = "colour"


@dataclass
class ViewFeatures:
    """Features of the V views of one sample (fp16 numpy, possibly memory-mapped).

    Attributes:
        global_: (V, D) global tokens.
        tokens: (V, L, 1+P, D) V-V patch tokens of the configured layers, CLS first.
    """

    global_: np.ndarray
    tokens: np.ndarray



def stack_features(
    features: list[ViewFeatures], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, D) global and (B, V, L, 1+P, D) token float32 tensors of a batch of samples."""
    g = torch.from_numpy(np.stack([np.asarray(f.global_, dtype=np.float32) for f in features]))
    t = torch.from_numpy(np.stack([np.asarray(f.tokens, dtype=np.float32) for f in features]))
    return g.to(device), t.to(device)


class ViewEncoder:
    """Renders samples, encodes their views with the backbone, and caches the features.

    Args:
        backbone: The loaded frozen backbone.
        preset: The views.
        settings: Render settings (``image_size`` is normally the backbone's).
        cache: Feature cache (``FeatureCache(None)`` disables it).
        batch_size: Images per backbone forward pass.
    """

    def __init__(
        self,
        backbone: Backbone,
        preset: ViewPreset,
        settings: RenderSettings,
        *,
        cache: FeatureCache | None = None,
        batch_size: int = 18,
    ) -> None:
        self.backbone = backbone
        self.preset = preset
        self.settings = settings
        self.cache = cache if cache is not None else FeatureCache(None)
        self.batch_size = batch_size
        self.extractor = ImageFeatureExtractor(backbone)
        self.backbone_calls = 0

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def grid_size(self) -> int:
        return self.extractor.grid_size

    def key(self, sample: PointCloudSample, mode: str) -> str:
        """Cache key of the ``mode`` (geometry | colour) features of ``sample``."""
        return FeatureCache.key(
            sample=sample.content_hash(),
            views=self.preset.rotations.tolist(),
            pre_transform=self.preset.pre_transform.tolist(),
            render=dataclasses.asdict(self.settings),
            mode=mode,
            **self.backbone.key_parts(),
        )

    def render(
        self, samples: list[PointCloudSample], *, colours: bool = False, labels: bool = False
    ) -> Rendering:
        """Render ``samples`` on the backbone's device."""
        return render_samples(
            samples, self.preset, self.settings, device=self.device,
            with_colors=colours, with_labels=labels,
        )  # fmt: skip

    def encode(
        self,
        samples: list[PointCloudSample],
        *,
        mode: str = GEOMETRY,
        rendering: Rendering | None = None,
    ) -> list[ViewFeatures]:
        """Features of every view of every sample, from the cache or computed now.

        Args:
            samples: The samples (as rendered: already prepared).
            mode: ``geometry`` (shaded renderings) or ``colour`` (per-point RGB renderings).
            rendering: Their rendering, if already made (it is only made for cache misses).
        """
        out = []
        for b, sample in enumerate(samples):
            def compute(b: int = b, sample: PointCloudSample = sample) -> dict[str, torch.Tensor]:
                nonlocal rendering
                if rendering is None or (mode == COLOUR and rendering.color_images is None):
                    rendering = self.render(samples, colours=mode == COLOUR)
                return self._extract(rendering, b, mode, sample)

            arrays = self.cache.get_or_compute(self.key(sample, mode), compute)
            out.append(ViewFeatures(arrays["global"], arrays["tokens"]))
        return out

    def _extract(
        self, rendering: Rendering, b: int, mode: str, sample: PointCloudSample
    ) -> dict[str, torch.Tensor]:
        images = rendering.images[b] if mode == GEOMETRY else rendering.color_images
        if images is None:
            raise ValueError(f"sample {sample.sample_id!r} has no colours to render in colour mode")
        if mode == COLOUR:
            images = images[b]
        self.backbone_calls += 1
        features = self.extractor(images, batch_size=self.batch_size)
        return {"global": features.global_, "tokens": features.tokens}
