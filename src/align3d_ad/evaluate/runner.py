"""Score the categories of a dataset with a detector and compute their metrics.

The Python API behind ``align3d-ad test``; samples are streamed (read, scored, reduced to their
scores) so a whole dataset is never held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import distributed
from ..config import EvalConfig
from ..data import PointCloudSample, SampleRef, get_dataset
from ..errors import ConfigError
from ..progress import progress
from .scores import CategoryScores, SampleScores

logger = logging.getLogger(__name__)

#: Samples read and scored together.
TEST_BATCH = 4

Scores = dict[str, dict[str, float]]
OnPrediction = Callable[[PointCloudSample, Any], None]


def evaluate_dataset(
    detector: Any,
    dataset: str,
    root: str | Path,
    *,
    out_dir: str | Path,
    categories: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    eval_config: EvalConfig | None = None,
    on_prediction: OnPrediction | None = None,
    select: Callable[[list[SampleRef]], list[SampleRef]] | None = None,
) -> dict[str, Scores]:
    """Score every sample of the test split of each category; save scores; return metrics.

    Args:
        detector: A :class:`~align3d_ad.model.detector.Detector`.
        dataset: Reader name (mvtec3d, eyecandies, real3d).
        root: Dataset root.
        out_dir: Where ``scores/<category>.npz`` go.
        categories: Categories to test (default: every category of the dataset but ``exclude``).
        exclude: Categories left out (the auxiliary training categories in one-vs-rest).
        eval_config: Split, grid size and AUPRO settings.
        on_prediction: Called with every (sample, prediction), e.g. to write visualisations.
        select: Picks the references to test from each category's (e.g. a subset for a demo).

    Returns:
        {category: {"object": {...}, "foreground": {...}, "grid": {...}}}.

    Under torchrun each rank scores its share of every category's batches; rank 0 gathers the
    scores in sample order, saves them and computes the metrics, which every rank returns.
    """
    cfg = eval_config or EvalConfig()
    reader = get_dataset(dataset, root, **cfg.reader_options)
    available = reader.categories()
    names = list(categories) if categories else [c for c in available if c not in set(exclude)]
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ConfigError(
            f"categories must be among those of {dataset} at {root} ({', '.join(available)}), "
            f"got {', '.join(unknown)}"
        )
    if not names:
        raise ConfigError(f"no categories left to test in {root} after excluding {list(exclude)}")
    scores_dir = Path(out_dir) / "scores"
    results: dict[str, Scores] = {}
    for category in names:
        split = cfg.split or reader.labelled_split
        refs = reader.refs(category, split)
        refs = select(refs) if select is not None else refs
        if not refs:
            raise ConfigError(f"category {category} has no {split} samples in {root}")
        scores = CategoryScores(category, grid_size=cfg.grid_size)
        entries: list[tuple[int, SampleScores]] = []
        mine = distributed.my_batches(len(refs), TEST_BATCH)  # all of them in one process
        for start, stop in progress(mine, desc=category, total=len(mine)):
            samples = [reader.load(ref) for ref in refs[start:stop]]
            for k, (sample, pred) in enumerate(zip(samples, detector.predict(samples))):
                entries.append((start + k, scores.score(
                    sample, pred.point_scores, pred.object_score, foreground=pred.foreground
                )))  # fmt: skip
                if on_prediction is not None:
                    on_prediction(sample, pred)
        gathered = distributed.gather_in_order(entries)
        if gathered is None:  # another rank than 0: rank 0 saves and computes the metrics
            continue
        for _, entry in gathered:
            scores.append(entry)
        scores.save(scores_dir / f"{category}.npz")
        results[category] = scores.metrics(method=cfg.aupro_method, max_fpr=cfg.max_fpr)
        logger.info("%s: %s", category, _short(results[category]))
    return distributed.broadcast(results)


def _short(scores: Scores) -> str:
    o, f, g = scores["object"], scores["foreground"], scores["grid"]
    return (
        f"O-AUROC {o['o_auroc']:.3f}  O-AP {o['o_ap']:.3f}  P-AUROC {f['p_auroc']:.3f} "
        f"(grid {g['p_auroc']:.3f})  AUPRO {f['aupro']:.3f} (grid {g['aupro']:.3f})"
    )
