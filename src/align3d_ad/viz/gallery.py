"""The report's gallery: the samples worth looking at, picked while a dataset is scored.

:class:`GalleryCollector` is an ``on_prediction`` callback (``evaluate_dataset``, ``predict``):
it keeps, per category, the ``per_kind`` best detections (defective, highest object score), worst
misses (defective, lowest) and false alarms (good, highest); for unlabelled clouds the highest and
lowest scored. A sample is packed for the 3D viewer (:func:`~.cloud_view.encode_cloud`) and its
view grid rendered only when it enters the selection, so memory stays bounded by the selection.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.prepare import prepare_sample
from ..data.sample import PointCloudSample
from ..render import RenderSettings, ViewPreset, render_samples
from .cloud_view import DISPLAY_CAP, encode_cloud
from .grid import save_view_grid
from .heat import point_scores_to_view_heat

logger = logging.getLogger(__name__)

#: Kinds of gallery entries: (name, label it applies to (None: unlabelled), highest score first).
LABELLED_KINDS = (("best detection", 1, True), ("worst miss", 1, False), ("false alarm", 0, True))
UNLABELLED_KINDS = (("highest score", None, True), ("lowest score", None, False))
#: Score channels of a prediction shown by the viewer, in menu order.
FUSED = "fused"


@dataclass
class GalleryItem:
    """One sample of the gallery: what the report shows of it."""

    name: str
    category: str
    kind: str
    label: int | None
    object_score: float
    cloud: dict[str, Any]  #: :func:`encode_cloud` of its scored (foreground) points
    views_png: bytes | None = None  #: view grid with the heat overlay
    organised: bool = False


@dataclass(frozen=True)
class ViewGrid:
    """How to render the view grid of a gallery sample (the detector's views and settings)."""

    preset: ViewPreset
    settings: RenderSettings
    data_config: Any  #: the detector's DataConfig (preprocessing as the detector did it)
    seed: int = 0
    device: torch.device | str | None = None

    def __call__(self, sample: PointCloudSample, point_scores: np.ndarray) -> bytes:
        """PNG bytes of ``sample``'s views with ``point_scores`` (per original point) as heat."""
        prepared = prepare_sample(sample, self.data_config, seed=self.seed)
        scores = np.asarray(point_scores)[prepared.foreground][prepared.rendered]
        rendering = render_samples([prepared.sample], self.preset, self.settings, device=self.device)
        heat = point_scores_to_view_heat(rendering, [torch.as_tensor(scores)])[0]
        mask = None if rendering.gt_masks is None else rendering.gt_masks[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = save_view_grid(Path(tmp) / "views.png", rendering.images[0], heat=heat,
                                  mask=mask, titles=list(rendering.preset.labels))  # fmt: skip
            return path.read_bytes()


def _channels(pred: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The fused scores and each branch's, at ``rows``."""
    out = {FUSED: np.asarray(pred.point_scores)[rows]}
    for branch, values in sorted((getattr(pred, "branch_point_scores", None) or {}).items()):
        out[branch] = np.asarray(values)[rows]
    return out


class GalleryCollector:
    """Keeps the gallery's samples while a dataset is scored (an ``on_prediction`` callback).

    Args:
        per_kind: Samples kept per (category, kind).
        cap: Most points of a cloud shown by the viewer.
        views: ``views(sample, point_scores) -> PNG bytes`` (e.g. a :class:`ViewGrid`); None = no
            view grids.
        seed: Seed of the point decimation.
    """

    def __init__(self, *, per_kind: int = 1, cap: int = DISPLAY_CAP,
                 views: Callable[[PointCloudSample, np.ndarray], bytes] | None = None, seed: int = 0) -> None:  # fmt: skip
        if per_kind < 1:
            raise ValueError(f"per_kind must be at least 1, got {per_kind}")
        self.per_kind, self.cap, self.views, self.seed = per_kind, cap, views, seed
        self._slots: dict[tuple[str, str], list[tuple[float, int, GalleryItem]]] = {}
        self._count = 0

    def _wanted(self, category: str, label: int | None, score: float) -> list[tuple[str, float]]:
        """The kinds ``score`` enters, with its sort key (lower key = better placed)."""
        kinds = UNLABELLED_KINDS if label is None else LABELLED_KINDS
        out = []
        for kind, applies, highest in kinds:
            if applies is not None and applies != label:
                continue
            key = -score if highest else score
            slot = self._slots.get((category, kind), [])
            if len(slot) < self.per_kind or key < slot[-1][0]:
                out.append((kind, key))
        return out

    def __call__(self, sample: PointCloudSample, pred: Any) -> None:
        """Consider one scored sample (the ``on_prediction`` signature)."""
        score = float(pred.object_score)
        if not math.isfinite(score):
            return
        label = None if sample.label is None else int(sample.label)
        category = sample.category or ""
        wanted = self._wanted(category, label, score)
        if not wanted:
            return
        item = self._item(sample, pred, label, score)
        for kind, key in wanted:
            slot = self._slots.setdefault((category, kind), [])
            self._count += 1
            slot.append((key, self._count, item))
            slot.sort(key=lambda entry: entry[:2])
            del slot[self.per_kind :]

    def _item(self, sample: PointCloudSample, pred: Any, label: int | None, score: float) -> GalleryItem:
        fg = getattr(pred, "foreground", None)
        rows = np.arange(sample.num_points) if fg is None else np.flatnonzero(fg)
        gt = None if sample.point_labels is None else np.asarray(sample.point_labels)[rows]
        cloud = encode_cloud(sample.points[rows], _channels(pred, rows), gt=gt, cap=self.cap,
                             seed=self.seed)  # fmt: skip
        png = None if self.views is None else self.views(sample, pred.point_scores)
        return GalleryItem(name=str(sample.sample_id), category=sample.category or "", kind="",
                           label=label, object_score=score, cloud=cloud, views_png=png,
                           organised=bool(sample.is_organised))  # fmt: skip

    def items(self) -> list[GalleryItem]:
        """The selection: by category, then kind, best placed first; each sample once."""
        order = [k for k, _, _ in LABELLED_KINDS + UNLABELLED_KINDS]
        out, seen = [], set()
        for (_category, kind), slot in sorted(self._slots.items(),
                                             key=lambda e: (e[0][0], order.index(e[0][1]))):  # fmt: skip
            for _, _, item in slot:
                if id(item) in seen:
                    continue
                seen.add(id(item))
                out.append(GalleryItem(**{**item.__dict__, "kind": kind}))
        return out

