"""The published protocols: one-vs-rest and cross-dataset (METHOD.md §7), one call per table row.

One-vs-rest: train on one auxiliary category (its labelled test split), test on every other
category of the same dataset; repeat for each configured auxiliary and average. Cross-dataset: the
models trained on the auxiliaries of one dataset are tested on every category of another.

Test-time views (:func:`choose_views`, used by ``reproduce`` and ``test`` alike): ``eval.views``
when set; otherwise, on another dataset than the training one, the view preset of the test dataset;
otherwise the training views (``render.views``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import distributed
from ..backbone import load_backbone
from ..config import Config
from ..errors import ConfigError
from ..model.checkpoint import backbone_spec, make_encoder, view_preset
from ..model.detector import Detector
from ..render.views import ViewPreset, get_view_preset, list_view_presets
from ..training.trainer import train_model
from .runner import EvaluationPlan, OnPrediction, evaluate_dataset, plan_evaluation
from .tables import combine_runs, write_results

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewChoice:
    """The views a trained model renders on a test dataset, and why (see :func:`choose_views`)."""

    preset: ViewPreset
    source: str  #: "eval.views", "test dataset" or "training config"
    changed: bool  #: other views than the training ones (the detector needs ``with_views``)

    def describe(self) -> str:
        """E.g. ``"views real3d (the test dataset's preset)"``, for the run log."""
        why = {
            "eval.views": "set by eval.views",
            "test dataset": "the test dataset's preset; set eval.views to choose others",
            "training config": "render.views of the training config",
        }[self.source]
        return f"views {self.preset.name} ({self.preset.num_views} views; {why})"

    def to_dict(self) -> dict[str, Any]:
        """What metrics.json records: preset name, source and the view labels."""
        preset = self.preset
        return {"preset": preset.name, "source": self.source, "views": list(preset.labels)}


def choose_views(
    train_config: Config, dataset: str, views: str | tuple | None = None
) -> ViewChoice:
    """The views a model trained with ``train_config`` renders when tested on ``dataset``.

    Args:
        train_config: The training config (its ``data.dataset`` and ``render.views``).
        dataset: The test dataset's reader name.
        views: ``eval.views`` (a preset name or a list of ``[axis, degrees]`` pairs), or None.
    """
    trained = view_preset(train_config)
    if views is not None:
        preset = view_preset(train_config.replace(**{"render.views": views}))
        return ViewChoice(preset, "eval.views", True)
    if dataset != train_config.data.dataset and dataset in list_view_presets():
        preset = get_view_preset(dataset)
        return ViewChoice(preset, "test dataset", preset.name != trained.name)
    return ViewChoice(trained, "training config", False)


def run_protocol(
    config: Config,
    out_dir: str | Path,
    *,
    root: str | Path,
    test_root: str | Path | None = None,
    weights: str | Path | None = None,
    on_detector: Callable[[Detector], OnPrediction | None] | None = None,
) -> dict[str, Any]:
    """Train one model per auxiliary, test it as the protocol says, write the result tables.

    Args:
        config: Resolved config; ``protocol.auxiliaries`` (default ``data.train_categories``) and
            ``protocol.test_datasets`` (default: one-vs-rest on ``data.dataset``).
        out_dir: Run folder: ``<aux>/model`` per auxiliary, ``<aux>/<dataset>/scores``, metrics.
        root: Root of the training dataset.
        test_root: Root of the test dataset of a cross-dataset row.
        weights: Local backbone weights.
        on_detector: Called with each detector before it is tested; returns the
            ``on_prediction`` callback of its test (e.g. a report's gallery), or None.

    Returns:
        The metrics.json document (also written, with metrics.csv and metrics.md).
    """
    out_dir = Path(out_dir)
    auxiliaries = config.protocol.auxiliaries or config.data.train_categories
    if not auxiliaries:
        raise ConfigError("protocol.auxiliaries must name at least one auxiliary category")
    tests = config.protocol.test_datasets or (config.data.dataset,)
    cross = [t for t in tests if t != config.data.dataset]
    if cross and test_root is None:
        raise ConfigError(f"testing on {', '.join(cross)} needs its dataset root: pass --test-root DIR")
    # every test dataset is checked before the first model trains (docs/data.md)
    plans: dict[tuple[str, str], EvaluationPlan] = {}
    for dataset in tests:
        same = dataset == config.data.dataset
        shared = None if same else plan_evaluation(
            dataset, test_root, categories=config.eval.categories or None, eval_config=config.eval
        )  # fmt: skip
        for aux in auxiliaries:
            plans[(aux, dataset)] = shared or plan_evaluation(
                dataset, root, categories=config.eval.categories or None, exclude=[aux],
                eval_config=config.eval,
            )  # fmt: skip
    backbone = load_backbone(backbone_spec(config.backbone, weights=weights), device=config.device)
    runs: dict[str, dict[str, Any]] = {}
    views: dict[str, dict[str, Any]] = {}
    for aux in auxiliaries:
        aux_config = config.replace(**{"data.train_categories": [aux], "data.root": str(root)})
        model_dir = out_dir / aux / "model"
        if distributed.is_main():
            model_dir.mkdir(parents=True, exist_ok=True)
        logger.info("training on auxiliary %s", aux)
        trained = train_model(aux_config, model_dir, backbone=backbone)
        # the trained head in memory (what model_dir holds), so no rank needs to read rank 0's files
        detector = Detector(aux_config, make_encoder(aux_config, backbone), trained.head)
        for dataset in tests:
            same = dataset == config.data.dataset
            name = aux if len(tests) == 1 else f"{aux}->{dataset}"
            choice = choose_views(aux_config, dataset, config.eval.views)
            logger.info("testing %s on %s with %s", aux, dataset, choice.describe())
            views[dataset] = choice.to_dict()
            tested = detector.with_views(choice.preset) if choice.changed else detector
            runs[name] = evaluate_dataset(
                tested, dataset, root if same else test_root, out_dir=out_dir / aux / dataset,
                eval_config=config.eval, plan=plans[(aux, dataset)],
                on_prediction=on_detector(tested) if on_detector is not None else None,
            )  # fmt: skip
    doc = combine_runs(
        runs, setting=config.protocol.published or config.protocol.name,
        backbone=f"{backbone.name} ({backbone.source}; {backbone.fingerprint})", random_weights=backbone.is_random,
        views=views,
    )  # fmt: skip
    if distributed.is_main():
        write_results(out_dir, doc)
    return doc
