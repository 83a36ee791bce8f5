"""Training items: everything both stages need of one auxiliary sample, computed once.

Per sample: the cached image features of the geometry and (for stage 1) colour renderings, the
rendered GT masks, and a fixed random subset of its points with their positions in every view (for
the 3D point loss). Both stages then run on these items only: no rendering and no backbone forward
inside an epoch (METHOD.md §3, DESIGN.md "Performance principles").
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from .. import distributed
from ..backbone.encode import COLOUR, ViewEncoder, ViewFeatures
from ..data.prepare import PreparedSample
from ..errors import Align3DError, ConfigError
from ..progress import progress
from ..render import Rendering

logger = logging.getLogger(__name__)

#: Points per sample kept for the 3D point loss (a fixed random subset; the Dice loss is a ratio
#: of sums, so a few thousand points estimate it well and keep an epoch cheap on 2.7M-point scans).
MAX_LOSS_POINTS = 16384
#: Samples rendered together while building the items.
RENDER_BATCH = 4


@dataclass
class TrainItem:
    """One auxiliary training sample, ready for both stages.

    Attributes:
        sample_id: Its id.
        label: 1 anomalous, 0 normal.
        view_labels: float (V,), 1 where the view's GT mask has an anomalous pixel.
        gt_masks: bool (V, S, S) rendered GT masks.
        render: Geometry-rendering features.
        colour: Colour-rendering features (stage 1), or None.
        projection: A single-sample :class:`Rendering` holding only the loss points' positions and
            visibility (no images), for :func:`~align3d_ad.render.back_project`.
        point_labels: bool (n,) labels of the loss points.
    """

    sample_id: str
    label: int
    view_labels: torch.Tensor
    gt_masks: torch.Tensor
    render: ViewFeatures
    colour: ViewFeatures | None
    projection: Rendering
    point_labels: torch.Tensor


def _loss_points(rendering: Rendering, b: int, rows: np.ndarray) -> Rendering:
    """The rendering of sample ``b`` restricted to ``rows`` of its points, without images."""
    sl = rendering.sample_slice(b)
    idx = torch.from_numpy(rows).to(rendering.points.device)
    empty = torch.empty(0)
    return dataclasses.replace(
        rendering,
        images=empty, depth=empty, index_map=empty, color_images=None, gt_masks=None,
        pixel_coords=rendering.pixel_coords[sl][idx], point_depth=rendering.point_depth[sl][idx],
        visible=rendering.visible[sl][idx], points=rendering.points[sl][idx],
        counts=(len(rows),), centres=rendering.centres[b : b + 1], scales=rendering.scales[b : b + 1],
        spacing=rendering.spacing[b : b + 1], splat_radius=rendering.splat_radius[b : b + 1],
        depth_tolerance=rendering.depth_tolerance[b : b + 1], cache={},
    )  # fmt: skip


def _extract_my_share(prepared: list[PreparedSample], encoder: ViewEncoder, with_colour: bool) -> int:
    """Under torchrun: extract this rank's share of the features into the shared cache, then wait.

    Batches are those of the single-process run, so the cached features are identical. Returns
    the number of entries this rank computed.
    """
    if not encoder.cache.enabled:
        raise ConfigError(
            "data-parallel training shares the extracted features through the feature cache: set "
            "backbone.use_cache=true and backbone.cache_dir to a folder every rank sees"
        )
    mine = distributed.my_batches(len(prepared), RENDER_BATCH)
    for start, stop in progress(mine, desc="features", total=len(mine)):
        chunk = [p.sample for p in prepared[start:stop]]
        rendering = encoder.render(chunk, colours=with_colour, labels=True)
        encoder.encode(chunk, rendering=rendering, host=True)
        if with_colour:
            encoder.encode(chunk, mode=COLOUR, rendering=rendering, host=True)
    encoder.cache.flush()  # the other ranks read these entries after the barrier
    distributed.barrier()
    return encoder.cache.misses


def build_train_items(
    prepared: list[PreparedSample],
    encoder: ViewEncoder,
    *,
    with_colour: bool,
    seed: int = 0,
    max_loss_points: int = MAX_LOSS_POINTS,
) -> list[TrainItem]:
    """Render, encode (or read from the cache) and package the training samples.

    Under torchrun the ranks first extract their shares of the features into the shared cache;
    every rank then builds all the items from it (rendering only).

    Raises:
        Align3DError: A sample has no label or point labels, or (``with_colour``) no colours.
    """
    for p in prepared:
        s = p.sample
        if s.label is None or s.point_labels is None:
            raise Align3DError(f"training sample {s.sample_id!r} must have labels and point labels")
        if with_colour and s.colors is None:
            raise Align3DError(
                f"training sample {s.sample_id!r} has no colours: stage 1 (the aligner) needs RGB; "
                "train on a dataset with colours or set method.variant=pointad"
            )
    computed_by_me = _extract_my_share(prepared, encoder, with_colour) if distributed.active() else 0
    items: list[TrainItem] = []
    starts = range(0, len(prepared), RENDER_BATCH)
    for start in progress(starts, desc="features", total=len(starts)):
        chunk = [p.sample for p in prepared[start : start + RENDER_BATCH]]
        rendering = encoder.render(chunk, colours=with_colour, labels=True)
        geometry = encoder.encode(chunk, rendering=rendering, host=True)
        colour = (encoder.encode(chunk, mode=COLOUR, rendering=rendering, host=True)
                  if with_colour else None)  # fmt: skip
        assert rendering.gt_masks is not None
        for b, sample in enumerate(chunk):
            rng = np.random.default_rng([seed, start + b])
            n = sample.num_points
            rows = np.sort(rng.choice(n, size=min(n, max_loss_points), replace=False))
            masks = rendering.gt_masks[b].cpu()
            items.append(
                TrainItem(
                    sample_id=sample.sample_id, label=int(sample.label),
                    view_labels=masks.flatten(1).any(dim=1).float(), gt_masks=masks,
                    render=geometry[b], colour=None if colour is None else colour[b],
                    projection=_loss_points(rendering, b, rows),
                    point_labels=torch.from_numpy(sample.point_labels[rows]),
                )  # fmt: skip
            )
    encoder.cache.flush()
    if distributed.active() and encoder.cache.misses > computed_by_me:
        logger.warning(
            "rank %d computed %d features that other ranks had just written: the feature cache "
            "folder %s is not shared between the ranks, so each extracts everything; put "
            "backbone.cache_dir on storage all ranks see", distributed.rank(),
            encoder.cache.misses - computed_by_me, encoder.cache.root,
        )  # fmt: skip
    logger.info(
        "%d training samples (%d anomalous); feature cache: %d read, %d computed",
        len(items), sum(i.label for i in items), encoder.cache.hits, encoder.cache.misses,
    )  # fmt: skip
    return items
