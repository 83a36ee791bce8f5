"""The published protocols: one-vs-rest and cross-dataset (METHOD.md §7), one call per table row.

One-vs-rest: train on one auxiliary category (its labelled test split), test on every other
category of the same dataset; repeat for each configured auxiliary and average. Cross-dataset: the
models trained on the auxiliaries of one dataset are tested on every category of another.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import distributed
from ..backbone import load_backbone
from ..config import Config
from ..errors import ConfigError
from ..model.checkpoint import backbone_spec, make_encoder, view_preset
from ..model.detector import Detector
from ..training.trainer import train_model
from .runner import evaluate_dataset
from .tables import combine_runs, write_results

logger = logging.getLogger(__name__)


def run_protocol(
    config: Config,
    out_dir: str | Path,
    *,
    root: str | Path,
    test_root: str | Path | None = None,
    weights: str | Path | None = None,
) -> dict[str, Any]:
    """Train one model per auxiliary, test it as the protocol says, write the result tables.

    Args:
        config: Resolved config; ``protocol.auxiliaries`` (default ``data.train_categories``) and
            ``protocol.test_datasets`` (default: one-vs-rest on ``data.dataset``).
        out_dir: Run folder: ``<aux>/model`` per auxiliary, ``<aux>/<dataset>/scores``, metrics.
        root: Root of the training dataset.
        test_root: Root of the test dataset of a cross-dataset row.
        weights: Local backbone weights.

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
    backbone = load_backbone(backbone_spec(config.backbone, weights=weights), device=config.device)
    runs: dict[str, dict[str, Any]] = {}
    for aux in auxiliaries:
        aux_config = config.replace(**{"data.train_categories": [aux], "data.root": str(root)})
        model_dir = out_dir / aux / "model"
        if distributed.is_main():
            model_dir.mkdir(parents=True, exist_ok=True)
        logger.info("training on auxiliary %s", aux)
        trained = train_model(aux_config, model_dir, backbone=backbone)
        # the trained head in memory (what model_dir holds), so no rank needs to read rank 0's files
        detector = Detector(aux_config, make_encoder(aux_config, backbone), trained.head)
        if config.eval.views is not None:
            detector = detector.with_views(view_preset(config.replace(**{"render.views": config.eval.views})))
        for dataset in tests:
            same = dataset == config.data.dataset
            name = aux if len(tests) == 1 else f"{aux}->{dataset}"
            runs[name] = evaluate_dataset(
                detector, dataset, root if same else test_root, out_dir=out_dir / aux / dataset,
                categories=config.eval.categories or None, exclude=[aux] if same else [],
                eval_config=config.eval,
            )  # fmt: skip
    doc = combine_runs(
        runs, setting=config.protocol.published or config.protocol.name,
        backbone=f"{backbone.name} ({backbone.source}; {backbone.fingerprint})", random_weights=backbone.is_random,
    )  # fmt: skip
    if distributed.is_main():
        write_results(out_dir, doc)
    return doc
