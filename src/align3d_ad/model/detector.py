"""The detector: point clouds -> per-point and per-object anomaly scores (METHOD.md §6).

Render every view, read (or extract and cache) the frozen image features, score each branch
against its prompts, back-project the patch maps to the points (bilinear, mean over the views that
see a point), smooth in 3D, and fuse the branches with α (object) and β (point). α and β are fixed
(0.5/0.5 by default), never tuned on test data.

Examples:
    >>> detector = Detector.from_checkpoint("runs/bagel")  # doctest: +SKIP
    >>> prediction = detector.predict(points)               # (N, 3) array or a PointCloudSample
    >>> prediction.point_scores.shape, prediction.object_score
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import profiling
from ..backbone.encode import ViewEncoder, stack_features
from ..backbone.loader import Backbone
from ..config import Config
from ..data.prepare import PreparedSample, prepare_sample
from ..data.sample import PointCloudSample
from ..errors import ConfigError
from ..render import (
    Rendering,
    SmoothingPlan,
    ViewPreset,
    back_project,
    point_spacing,
    smooth_grid_scores,
    smooth_point_scores,
    smoothing_plan,
)
from .checkpoint import load_parts
from .fewshot import FEWSHOT, ZERO_SHOT, ReferenceBank, fuse_fewshot
from .head import AnomalyHead, fuse_branches

if TYPE_CHECKING:
    from .calibration import Calibration

logger = logging.getLogger(__name__)

#: Samples rendered and scored together.
PREDICT_BATCH = 4


@dataclass
class Prediction:
    """Scores of one sample.

    Attributes:
        sample_id: The sample's id.
        point_scores: float32 (N,), one per point of the sample as given (background removed by
            preprocessing scores 0).
        object_score: The object-level anomaly score.
        grid_scores: (H, W) the point scores on the sample's organised grid (0 off the points), or
            None for unorganised clouds.
        branch_point_scores: {branch: (N,)} the per-branch point maps A^C / A^R (smoothed).
        branch_global: {branch: p} the per-branch mean anomalous probability of the global tokens.
        foreground: bool (N,), the points that were scored (False: removed as background).
        row_scores: float32, one per row of the sample's source (file or array; grid cells in
            row-major order for organised sources), NaN for rows that were not points (NaN/inf
            rows, missing grid cells); None when the sample does not know its source rows.
        reference: With ``method.postprocess: reference`` what the ``reference`` metrics read:
            ``(S x S map, None)`` (organised) or ``(scores, labels)`` of the resampled points.
        verdict: ``"ok"`` or ``"anomalous"`` (object score above the calibrated threshold), or
            None without a calibration (:mod:`align3d_ad.model.calibration`).
        mask: bool (N,), the points whose score is above the calibrated point threshold.
    """

    sample_id: str
    point_scores: np.ndarray
    object_score: float
    grid_scores: np.ndarray | None = None
    branch_point_scores: dict[str, np.ndarray] = field(default_factory=dict)
    branch_global: dict[str, float] = field(default_factory=dict)
    foreground: np.ndarray | None = None
    row_scores: np.ndarray | None = None
    reference: tuple[np.ndarray, np.ndarray | None] | None = None
    verdict: str | None = None  #: "ok" | "anomalous" with a calibration, else None
    mask: np.ndarray | None = None  #: bool (N,) point_scores > the point threshold (calibrated)
    zero_shot_object: float | None = None  #: with references: the zero-shot object score




class Detector:
    """Scores point clouds with a trained (or zero-shot) head.

    Args:
        config: The run's configuration (views, smoothing, fusion weights, preprocessing).
        encoder: Renders and encodes views (holds the backbone and the feature cache).
        head: The aligner and prompt learners.
    """

    def __init__(
        self,
        config: Config,
        encoder: ViewEncoder,
        head: AnomalyHead,
        *,
        references: ReferenceBank | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.references = references
        self.calibration = calibration
        self.head = head.to(encoder.device).eval()
        with torch.no_grad():
            self._texts = {k: v.detach() for k, v in head.texts().items()}

    @property
    def backbone(self) -> Backbone:
        return self.encoder.backbone

    def with_references(
        self,
        references: ReferenceBank | None,
        calibration: Calibration | None = None,
        *,
        warn: bool = True,
    ) -> Detector:
        """The same detector with few-shot references (and thresholds), or zero-shot (None).

        With references, a ``method.postprocess: reference`` detector scores with the native
        post-processing (the reference style has no few-shot maps); that is logged as a warning
        unless ``warn`` is False (for callers that record it themselves).
        """
        if references is not None and warn:
            from .calibration import postprocess_note

            note = postprocess_note(self.config.method.postprocess)
            if note:
                logger.warning("%s", note.replace("the checkpoint", "this detector", 1))
        return Detector(
            self.config, self.encoder, self.head, references=references, calibration=calibration
        )

    def with_views(self, preset: ViewPreset) -> Detector:
        """The same detector rendering ``preset``'s views, with its few-shot references and
        calibration when the views are those it had (ConfigError otherwise: references belong to
        the views they were rendered with)."""
        from .calibration import views_record

        encoder = ViewEncoder(
            self.backbone, preset, self.encoder.settings, cache=self.encoder.cache,
            batch_size=self.encoder.batch_size,
        )  # fmt: skip
        if self.references is not None and views_record(encoder) != views_record(self.encoder):
            raise ConfigError(
                f"with_views: the detector's few-shot references were rendered with views "
                f"{self.encoder.preset.name}, got {preset.name}; calibrate again with those views"
            )
        return Detector(self.config, encoder, self.head, references=self.references,
                        calibration=self.calibration)  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        weights: str | Path | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        backbone: Backbone | None = None,
        calibration: str | Path | None = None,
    ) -> Detector:
        """Load a run folder written by training (see :mod:`align3d_ad.model.checkpoint`).

        Args:
            path: The run folder.
            device: auto | cpu | cuda[:N].
            weights: Local backbone weights (default: those named in the checkpoint's config).
            cache_dir: Feature cache folder (default: the checkpoint config's).
            use_cache: False = never read or write the feature cache.
            backbone: An already loaded backbone to reuse (checked against the checkpoint).
            calibration: A folder written by ``align3d-ad calibrate`` (few-shot references and
                thresholds: predictions then carry ``verdict`` and ``mask``), checked against the
                checkpoint, backbone and views.
        """
        config, encoder, head = load_parts(
            path, device=device, weights=weights, cache_dir=cache_dir, use_cache=use_cache,
            backbone=backbone,
        )  # fmt: skip
        if calibration is None:
            return cls(config, encoder, head)
        from .calibration import load_calibration

        cal, bank = load_calibration(calibration, checkpoint=path, encoder=encoder)
        return cls(config, encoder, head, references=bank, calibration=cal)

    def predict(
        self, inputs: PointCloudSample | np.ndarray | Sequence[PointCloudSample | np.ndarray]
    ) -> Prediction | list[Prediction]:
        """Score one cloud (returns a :class:`Prediction`) or several (returns a list).

        Args:
            inputs: :class:`PointCloudSample` objects or (N, 3) arrays of points.
        """
        single = isinstance(inputs, (PointCloudSample, np.ndarray))
        items = [inputs] if single else list(inputs)
        samples = [
            s if isinstance(s, PointCloudSample) else PointCloudSample.from_points(np.asarray(s))
            for s in items
        ]
        out: list[Prediction] = []
        for start in range(0, len(samples), PREDICT_BATCH):
            chunk = samples[start : start + PREDICT_BATCH]
            prepared = [prepare_sample(s, self.config.data, seed=self.config.seed) for s in chunk]
            out.extend(self.predict_prepared(prepared))
        return out[0] if single else out

    @torch.no_grad()
    def predict_prepared(
        self, prepared: list[PreparedSample], *, exclude: Sequence[int | None] | None = None
    ) -> list[Prediction]:
        """Score samples that :func:`~align3d_ad.data.prepare.prepare_sample` prepared.

        ``exclude[i]``: the reference left out of the bank for sample i (leave-one-out). With
        few-shot references the native post-processing is used whatever ``method.postprocess``
        says (the reference style has no few-shot maps): ``calibrate`` and ``predict
        --calibration`` warn and record it, ``test --shots`` refuses such a checkpoint
        (docs/calibration.md).
        """
        if self.config.method.postprocess == "reference" and self.references is None:
            from .reference_post import predict_reference  # REFERENCE.md §1 and §3

            return [self._decide(p) for p in predict_reference(self, prepared)]
        samples = [p.sample for p in prepared]
        rendering = self.encoder.render(samples)
        feats = self.encoder.encode(samples, rendering=rendering)
        with profiling.stage("head"):
            global_, tokens = stack_features(feats, self.encoder.device)
            outs = self.head(global_, tokens, grid=self.encoder.grid_size, texts=self._texts)
            if self.references is not None:
                grid = self.encoder.grid_size
                few = self.references.score(tokens, exclude=exclude)  # (B, V, P)
                few = few.reshape(*few.shape[:2], 1, grid, grid)
        with profiling.stage("back-project"):
            point_maps = {b: back_project(o.patch_probs, rendering) for b, o in outs.items()}
            if self.references is not None:
                point_maps[FEWSHOT] = back_project(few, rendering)  # (N_i, 1) each
        rendering.cache.clear()  # back-projection taps (~300 bytes a point): not needed any more
        global_p = {b: o.global_logits.softmax(-1)[..., 1].mean(1) for b, o in outs.items()}
        results = []
        branches = list(point_maps)
        for i, prep in enumerate(prepared):
            stacked = torch.stack([point_maps[b][i][:, -1] for b in branches], dim=1)  # anomalous
            with profiling.stage("smooth"):
                smoothed = self._smooth(prep, stacked, rendering, i)
            points = {b: smoothed[:, k] for k, b in enumerate(branches)}
            glob = {b: p[i] for b, p in global_p.items()}
            few_point = points.pop(FEWSHOT, None)
            point, obj = fuse_branches(
                points, glob, alpha=self.config.method.alpha, beta=self.config.method.beta
            )
            zero_obj = None
            if few_point is not None:
                points[ZERO_SHOT], zero_obj = point, float(obj)
                point, obj = fuse_fewshot(point, obj, few_point, weight=self.fewshot_weight,
                                          scales=self.references.scales)  # fmt: skip
                points[FEWSHOT] = few_point
            with profiling.stage("lift"):
                pred = self._prediction(prep, point, obj, points, glob)
            pred.zero_shot_object = zero_obj
            results.append(self._decide(pred))
        return results

    @property
    def fewshot_weight(self) -> float:
        """Weight of the few-shot scores (the calibration's, else ``method.fewshot_weight``)."""
        if self.calibration is not None:
            return self.calibration.fewshot_weight
        return self.config.method.fewshot_weight

    def _decide(self, prediction: Prediction) -> Prediction:
        """Add the verdict and the point mask when calibrated."""
        if self.calibration is not None:
            prediction.verdict = self.calibration.verdict(prediction.object_score)
            prediction.mask = self.calibration.mask(prediction.point_scores)
        return prediction

    def _smooth(
        self, prep: PreparedSample, scores: torch.Tensor, rendering: Rendering, i: int
    ) -> torch.Tensor:
        """Smooth (N, C) point scores of sample ``i`` as ``method.smoothing`` says."""
        method = self.config.method
        if method.smoothing == "none":
            return scores
        sample = prep.sample
        if method.smoothing == "grid" and sample.is_organised:
            h, w = sample.grid_shape
            grid = scores.new_zeros(h * w, scores.shape[1])
            index = torch.from_numpy(sample.grid_index).to(scores.device)
            grid[index] = scores
            maps = grid.T.reshape(-1, h, w)
            smoothed = smooth_grid_scores(maps, sigma=method.grid_sigma)
            return smoothed.reshape(len(maps), -1)[:, index].T
        points = rendering.points[rendering.sample_slice(i)]
        plan = prep.extras.get("smoothing")  # made ahead by a loader worker (plan_smoothing)
        if plan is None:
            plan = plan_smoothing(points, method.smoothing_sigma)
        return smooth_point_scores(points, scores, plan=plan)

    @staticmethod
    def _prediction(
        prep: PreparedSample,
        point: torch.Tensor,
        obj: torch.Tensor,
        points: dict[str, torch.Tensor],
        glob: dict[str, torch.Tensor],
    ) -> Prediction:
        scores = prep.lift(point.float().cpu().numpy()).astype(np.float32)
        original = prep.original
        foreground = np.zeros(original.num_points, dtype=bool)
        foreground[prep.foreground] = True
        return Prediction(
            sample_id=original.sample_id,
            point_scores=scores,
            object_score=float(obj),
            grid_scores=original.to_grid(scores) if original.is_organised else None,
            branch_point_scores={b: prep.lift(v.float().cpu().numpy()) for b, v in points.items()},
            branch_global={b: float(v) for b, v in glob.items()},
            foreground=foreground,
            row_scores=None if original.source_index is None else original.to_rows(scores),
        )


def plan_smoothing(points: torch.Tensor, sigma_spacings: float) -> SmoothingPlan:
    """The 3D smoothing neighbours of a sample's points, ``method.smoothing_sigma`` spacings wide."""
    spacing = point_spacing(points)
    return smoothing_plan(points, sigma=sigma_spacings * spacing, spacing=spacing)


def plan_ahead(prep: PreparedSample, config: Config, device: torch.device | str) -> PreparedSample:
    """``prep`` with what :meth:`Detector.predict_prepared` can use computed ahead (in place).

    For scoring on the CPU with ``method.smoothing: knn``, the 3D smoothing neighbours (a k-d
    tree search, often the largest CPU step after the backbone): a loader worker then does it
    while the previous batch is scored. On other devices the search runs there (nothing here).
    """
    method = config.method
    if torch.device(device).type == "cpu" and (method.smoothing, method.postprocess) == (
        "knn", "native"
    ):
        points = torch.from_numpy(prep.sample.points)
        prep.extras["smoothing"] = plan_smoothing(points, config.method.smoothing_sigma)
    return prep


#: The same as :meth:`Detector.from_checkpoint`.
load_detector = Detector.from_checkpoint
