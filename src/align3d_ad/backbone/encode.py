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

from .. import profiling
from ..data.sample import PointCloudSample
from ..render import Rendering, RenderSettings, ViewPreset, render_samples
from .cache import FeatureCache
from .image import ImageFeatureExtractor
from .loader import Backbone

logger = logging.getLogger(__name__)

#: The features' dtype on the device: the cache's storage dtype.
STORE_DTYPE = torch.float16  # = STORE_FLOAT_DTYPE
GEOMETRY = "geometry"
COLOUR = "colour"


@dataclass
class ViewFeatures:
    """Features of the V views of one sample: float16, numpy (read from the cache, possibly
    memory-mapped) or a tensor on the backbone's device (just computed).

    Attributes:
        global_: (V, D) global tokens.
        tokens: (V, L, 1+P, D) V-V patch tokens of the configured layers, CLS first.
    """

    global_: np.ndarray | torch.Tensor
    tokens: np.ndarray | torch.Tensor



def stack_features(
    features: list[ViewFeatures], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, D) global and (B, V, L, 1+P, D) token float32 tensors of a batch of samples.

    Features already on ``device`` stay there; cached (host, float16) ones are widened while read
    on the CPU, or copied as float16 (half the bytes, pinned, non-blocking) to CUDA and widened
    there.
    """
    device = torch.device(device)
    g = torch.stack([_float32_on(f.global_, device) for f in features])
    t = torch.stack([_float32_on(f.tokens, device) for f in features])
    return g, t


def _float32_on(value: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device).float()
    if device.type != "cuda":  # one pass over the (read-only, memory-mapped) cache array
        return torch.from_numpy(np.asarray(value, dtype=np.float32))
    host = torch.from_numpy(np.array(value, copy=True))
    return host.pin_memory().to(device, non_blocking=True).float()


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
        with profiling.stage("render"):
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
        host: bool = False,
    ) -> list[ViewFeatures]:
        """Features of every view of every sample, from the cache or computed now.

        The views of all samples not in the cache go through the backbone together (B x V
        images, in passes of ``batch_size``). Fresh features stay on the device (rounded to the
        cache's float16, so results never depend on the cache state); the cache writes its copy
        in the background (:meth:`~.cache.FeatureCache.put`).

        Args:
            samples: The samples (as rendered: already prepared).
            mode: ``geometry`` (shaded renderings) or ``colour`` (per-point RGB renderings).
            rendering: Their rendering, if already made (else only the cache misses are rendered).
            host: Return fresh features as host arrays too (features kept for a long time, e.g.
                training items, should not hold device memory).
        """
        keys = [self.key(sample, mode) for sample in samples]
        found = [self.cache.lookup(key) for key in keys]
        missing = [b for b, arrays in enumerate(found) if arrays is None]
        if missing:
            if rendering is None or (mode == COLOUR and rendering.color_images is None):
                rendering = self.render([samples[b] for b in missing], colours=mode == COLOUR)
                rows = list(range(len(missing)))
            else:
                rows = missing
            for b, arrays in zip(missing, self._extract(rendering, rows, mode, samples)):
                self.cache.put(keys[b], arrays)
                found[b] = {k: v.cpu().numpy() for k, v in arrays.items()} if host else arrays
        return [ViewFeatures(arrays["global"], arrays["tokens"]) for arrays in found]

    def _extract(
        self, rendering: Rendering, rows: list[int], mode: str, samples: list[PointCloudSample]
    ) -> list[dict[str, torch.Tensor]]:
        """Float16 features of the rendered samples ``rows``, one backbone run for all views."""
        images = rendering.images if mode == GEOMETRY else rendering.color_images
        if images is None:
            names = ", ".join(repr(s.sample_id) for s in samples)
            raise ValueError(f"samples {names} have no colours to render in colour mode")
        index = torch.tensor(rows, device=images.device)
        chosen = images.index_select(0, index)  # (M, V, 3, S, S)
        m, n_v = chosen.shape[:2]
        self.backbone_calls += m
        with profiling.stage("backbone"):
            features = self.extractor(chosen.flatten(0, 1), batch_size=self.batch_size)
        global_ = features.global_.to(STORE_DTYPE).unflatten(0, (m, n_v))
        tokens = features.tokens.to(STORE_DTYPE).unflatten(0, (m, n_v))
        return [{"global": global_[j], "tokens": tokens[j]} for j in range(m)]
