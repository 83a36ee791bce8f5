"""Score the categories of a dataset with a detector and compute their metrics.

The Python API behind ``align3d-ad test``; samples are streamed (read, scored, reduced to their
scores) so a whole dataset is never held in memory. Everything that can be checked without scoring
is checked first (:func:`plan_evaluation`): the layout, every category's sample list, the ground
truth of every sample and the headers of every file, so a bad file in the last category stops the
run before the first sample is scored. A category that still fails while being scored raises
:class:`IncompleteEvaluationError`, which carries the metrics of the categories finished before it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed, profiling
from ..config import Config, EvalConfig
from ..data import DatasetReader, PointCloudSample, SampleRef, get_dataset
from ..data.loading import Loaded, default_workers, prefetch_batches, unwrap
from ..data.prepare import PreparedSample, prepare_sample
from ..errors import Align3DError, ConfigError, DatasetFormatError
from ..model.detector import plan_ahead
from ..progress import progress
from .scores import CategoryScores, SampleScores

logger = logging.getLogger(__name__)

#: How to leave samples without ground truth out, in the error that stops a test on one.
SKIP_HINT = "pass --skip-unlabelled (eval.on_missing_gt=skip) to skip and count such samples"

Scores = dict[str, dict[str, float]]
OnPrediction = Callable[[PointCloudSample, Any], None]


class EvaluationResults(dict):
    """``{category: scores}`` as :func:`evaluate_dataset` returns them, plus what was left out.

    Attributes:
        skipped: ``{category: [sample_id, ...]}`` of the samples skipped for want of ground truth
            (only with ``eval.on_missing_gt=skip``).
    """

    def __init__(self, *args: Any, skipped: dict[str, list[str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skipped: dict[str, list[str]] = dict(skipped or {})


class IncompleteEvaluationError(Align3DError):
    """A category failed while being scored, after the categories in ``results`` were finished.

    Attributes:
        category: The category that failed.
        cause: Its error, in one line.
        results: The metrics of the categories finished before it.
    """

    def __init__(self, category: str, cause: str, results: EvaluationResults) -> None:
        self.category = category
        self.cause = cause
        self.results = results
        super().__init__(f"category {category} failed: {cause}")


@dataclass
class EvaluationPlan:
    """What :func:`evaluate_dataset` will score, checked before anything is scored."""

    reader: DatasetReader
    split: str
    refs: dict[str, list[SampleRef]] = field(default_factory=dict)  #: per category, in order
    skipped: dict[str, list[str]] = field(default_factory=dict)  #: sample ids without gt


def plan_evaluation(
    dataset: str,
    root: str | Path,
    *,
    categories: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    eval_config: EvalConfig | None = None,
    select: Callable[[list[SampleRef]], list[SampleRef]] | None = None,
    check_files: bool = True,
) -> EvaluationPlan:
    """Check a test run up front and return the samples it will score.

    Checks, in order: the reader options and the folder layout; the categories; that every
    category has samples of the labelled split; that every sample has ground truth (or, with
    ``eval.on_missing_gt=skip``, skips and counts it); with ``check_files``, the headers of every
    file to be read (missing, empty or truncated files).

    Raises:
        ConfigError: unknown categories or reader options.
        DatasetFormatError: wrong layout, a category without samples, a sample without ground truth
            (naming the missing file), a truncated file (naming it).
    """
    cfg = eval_config or EvalConfig()
    reader = get_dataset(dataset, root, **cfg.reader_options)
    reader.check_layout()
    available = reader.categories()
    names = list(categories) if categories else list(available)
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ConfigError(
            f"categories must be among those of {dataset} at {root} ({', '.join(available)}), "
            f"got {', '.join(unknown)}"
        )
    left_out = [c for c in names if c in set(exclude)]
    if left_out and categories:  # the auxiliary is never tested on its own training split
        logger.warning("left out of this run's test: %s (trained on)", ", ".join(left_out))
    names = [c for c in names if c not in set(exclude)]
    if not names:
        raise ConfigError(f"no categories left to test in {root} after excluding {list(exclude)}")
    split = cfg.split or reader.labelled_split
    plan = EvaluationPlan(reader, split)
    empty = []
    for category in names:
        if split not in reader.splits(category):
            empty.append(f"{category} (no {split} split)")
            continue
        refs = reader.refs(category, split)
        refs = select(refs) if select is not None else refs
        keep = [ref for ref in refs if not _left_out(reader, ref, cfg.on_missing_gt, plan)]
        if not keep:
            skipped = len(plan.skipped.get(category, []))
            note = f" ({skipped} skipped without ground truth)" if skipped else ""
            empty.append(category + note)
        plan.refs[category] = keep
    if empty:
        raise DatasetFormatError(
            reader.root,
            f"every category tested must hold {split} samples to score, got none in "
            f"{', '.join(empty)}",
        )
    if check_files:
        _check_files(plan)
    return plan


def _left_out(reader: DatasetReader, ref: SampleRef, policy: str, plan: EvaluationPlan) -> bool:
    """Whether ``ref`` lacks ground truth and is skipped; raise when the policy says error."""
    missing = reader.missing_labels(ref)
    if missing is None:
        return False
    path, problem = missing
    if policy != "skip":
        raise DatasetFormatError(path, f"{problem}; {SKIP_HINT}")
    logger.warning("%s: %s; skipped (eval.on_missing_gt=skip)", path, problem)
    plan.skipped.setdefault(ref.category, []).append(ref.sample_id)
    return True


def _check_files(plan: EvaluationPlan) -> None:
    """Check the headers of every file the plan will read (the first bad one raises)."""
    start, count = time.perf_counter(), 0
    for refs in plan.refs.values():
        for ref in refs:
            plan.reader.check_files(ref)
            count += 1
    logger.info("checked the files of %d samples in %.1f s", count, time.perf_counter() - start)


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
    plan: EvaluationPlan | None = None,
) -> EvaluationResults:
    """Score every sample of the test split of each category; save scores; return metrics.

    Args:
        detector: A :class:`~align3d_ad.model.detector.Detector`.
        dataset: Reader name (mvtec3d, eyecandies, real3d).
        root: Dataset root.
        out_dir: Where ``scores/<category>.npz`` go.
        categories: Categories to test (default: every category of the dataset but ``exclude``).
        exclude: Categories left out (the auxiliary training categories in one-vs-rest).
        eval_config: Split, grid size, AUPRO settings and what to do without ground truth.
        on_prediction: Called with every (sample, prediction), e.g. to write visualisations.
        select: Picks the references to test from each category's (e.g. a subset for a demo).
        plan: A plan already checked by :func:`plan_evaluation` (default: made here from the
            arguments above).

    Returns:
        {category: {"object": {...}, "foreground": {...}, "grid": {...}}}, with ``.skipped``.

    Raises:
        IncompleteEvaluationError: a category failed while being scored (e.g. a file that passed
            the header check but does not decode); it carries the finished categories' metrics.

    Under torchrun each rank scores its share of every category's batches; rank 0 gathers the
    scores in sample order, saves them and computes the metrics, which every rank returns.
    """
    cfg = eval_config or EvalConfig()
    if plan is None:
        plan = plan_evaluation(
            dataset, root, categories=categories, exclude=exclude, eval_config=cfg, select=select
        )
    reader = plan.reader
    scores_dir = Path(out_dir) / "scores"
    results = EvaluationResults(skipped=plan.skipped)
    loaded = _prefetch(detector, reader, plan.refs, cfg)  # one loader: no idle category starts
    for category in plan.refs:
        scores = CategoryScores(category, grid_size=cfg.grid_size)
        entries: list[tuple[int, SampleScores]] = []
        failure = None
        try:
            _score(detector, loaded[category], scores, entries, category, on_prediction)
        except Align3DError as err:  # other ranks must hear of it before gathering
            failure = str(err)
        detector.encoder.cache.flush()  # the features this category computed are on disk now
        failures = [f for f in distributed.all_gather(failure) if f is not None]
        if failures:
            reader.flush_warnings()
            raise IncompleteEvaluationError(category, failures[0], distributed.broadcast(results))
        gathered = distributed.gather_in_order(entries)
        if gathered is None:  # another rank than 0: rank 0 saves and computes the metrics
            continue
        for _, entry in gathered:
            scores.append(entry)
        with profiling.stage("write"):
            scores.save(scores_dir / f"{category}.npz")
        results[category] = scores.metrics(method=cfg.aupro_method, max_fpr=cfg.max_fpr)
        logger.info("%s: %s", category, _short(results[category]))
    reader.flush_warnings()
    return distributed.broadcast(results)


@dataclass(frozen=True)
class _ReadAndPrepare:
    """Item ``i`` of the test: ``refs[i]`` read, prepared and planned (runs in a worker)."""

    reader: DatasetReader
    refs: list[SampleRef]  #: every category's, one after the other
    config: Config  #: the detector's
    device: torch.device  #: the detector's

    def __call__(self, index: int) -> PreparedSample:
        with profiling.stage("read"):
            sample = self.reader.load(self.refs[index])
        with profiling.stage("prepare"):
            prep = prepare_sample(sample, self.config.data, seed=self.config.seed)
            return plan_ahead(prep, self.config, self.device)


@dataclass
class _CategoryBatches:
    """This rank's batches of one category, as they come from the shared loader."""

    batches: Iterator[list[Loaded]]  #: shared by every category, in order
    count: int  #: how many of them are this category's
    first: int  #: index of the category's first item in the loader's list

    def __iter__(self) -> Iterator[list[Loaded]]:
        for batch in itertools.islice(self.batches, self.count):
            for item in batch:
                item.index -= self.first  # the index within the category
            yield batch


def _prefetch(
    detector: Any, reader: DatasetReader, refs: dict[str, list[SampleRef]], cfg: EvalConfig
) -> dict[str, _CategoryBatches]:
    """Every category's batches from one loader: workers read the next category's first batch
    while this one's last batches are scored and its metrics computed."""
    flat: list[SampleRef] = []
    ranges: list[range] = []
    counts: dict[str, tuple[int, int]] = {}
    for category, category_refs in refs.items():
        first = len(flat)
        mine = distributed.my_batches(len(category_refs), cfg.batch_size)  # all in one process
        ranges += [range(first + start, first + stop) for start, stop in mine]
        counts[category] = (len(mine), first)
        flat += category_refs
    load = _ReadAndPrepare(reader, flat, detector.config, detector.encoder.device)
    batches = prefetch_batches(load, ranges, workers=eval_workers(cfg, detector.encoder.device),
                               grouped=(reader.take_grouped, reader.add_grouped))  # fmt: skip
    return {c: _CategoryBatches(batches, n, first) for c, (n, first) in counts.items()}


def _score(
    detector: Any,
    batches: _CategoryBatches,
    scores: CategoryScores,
    entries: list[tuple[int, SampleScores]],
    category: str,
    on_prediction: OnPrediction | None,
) -> None:
    """Score this rank's batches of a category into ``entries``; workers read the next ones."""
    for items in progress(batches, desc=category, total=batches.count):
        prepared = [unwrap(item) for item in items]
        for item, prep, pred in zip(items, prepared, detector.predict_prepared(prepared)):
            with profiling.stage("write"):
                entries.append((item.index, scores.score(
                    prep.original, pred.point_scores, pred.object_score,
                    foreground=pred.foreground, reference=getattr(pred, "reference", None),
                )))  # fmt: skip
            if on_prediction is not None:
                on_prediction(prep.original, pred)


def eval_workers(cfg: EvalConfig, device: torch.device | str = "cpu") -> int:
    """Worker processes reading and preparing samples: ``eval.workers``, or the default for the
    scoring device (:func:`~align3d_ad.data.loading.default_workers`)."""
    return default_workers(device) if cfg.workers is None else cfg.workers


def _short(scores: Scores) -> str:
    o, f, g = scores["object"], scores["foreground"], scores["grid"]
    r = scores.get("reference", {"p_auroc": float("nan"), "aupro": float("nan")})
    return (
        f"O-AUROC {o['o_auroc']:.3f}  O-AP {o['o_ap']:.3f}  P-AUROC {f['p_auroc']:.3f} "
        f"(grid {g['p_auroc']:.3f}, reference {r['p_auroc']:.3f})  AUPRO {f['aupro']:.3f} "
        f"(grid {g['aupro']:.3f}, reference {r['aupro']:.3f})"
    )
