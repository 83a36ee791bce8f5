"""``align3d-ad test``: score a dataset with a trained checkpoint and write its metrics.

The dataset is checked before anything is written or the backbone is loaded (layout, every
category's samples, ground truth, file headers). The views are chosen as ``reproduce`` chooses them
(:func:`~align3d_ad.evaluate.protocol.choose_views`) and recorded in ``run.log`` and
``metrics.json``. A category that fails while being scored still leaves the metrics of the finished
ones in ``metrics.json`` (the failed one named there), then the command fails with one line.
"""

from __future__ import annotations

import argparse
import logging

from ... import distributed
from ...device import set_deterministic
from ...errors import Align3DError, ConfigError
from .. import html
from ..options import config_from_args, require_dir
from ..runs import start_run
from ..summary import results_summary

logger = logging.getLogger(__name__)


def _check_shots(args: argparse.Namespace, checkpoint: dict, plan) -> None:
    """Refuse ``--shots K`` before anything is written: a reference-post-processing checkpoint
    (its K-shot scores would be native, its zero-shot ones not), or too few normal train scans."""
    from ...evaluate.fewshot import check_shots
    from ...synth import MANIFEST_NAME

    postprocess = (checkpoint["config"].get("method") or {}).get("postprocess", "native")
    if postprocess != "native":
        raise ConfigError(
            f"--shots needs a checkpoint with method.postprocess: native, got {postprocess} in "
            f"{args.checkpoint}: few-shot references and their calibration are scored with the "
            "native post-processing, so zero-shot and K-shot would not be compared alike "
            "(docs/calibration.md)"
        )
    try:
        check_shots(plan, args.shots)
    except ConfigError as err:
        if not (args.root / MANIFEST_NAME).is_file():
            raise
        raise ConfigError(f"{err} (synthetic data: `align3d-ad synth --train-good N` writes N "
                          "normal training scans per category)") from err  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ...evaluate.protocol import choose_views
    from ...evaluate.runner import IncompleteEvaluationError, evaluate_dataset, plan_evaluation
    from ...evaluate.tables import combine_runs, write_results
    from ...model.checkpoint import read_checkpoint
    from ...model.detector import load_detector

    require_dir(args.root, "dataset root")
    if getattr(args, "shots", None) is not None:
        from ...model.thresholds import check_rate

        check_rate(args.false_alarm_rate)
        if args.shots < 1 or args.draws < 1:
            raise ConfigError(f"--shots and --draws must be >= 1, got {args.shots}, {args.draws}")
    doc = read_checkpoint(args.checkpoint)
    if getattr(args, "skip_unlabelled", False):
        args.overrides = [*args.overrides, "eval.on_missing_gt=skip"]
    config = config_from_args(args, args.config)
    set_deterministic(config.deterministic)  # --deterministic
    plan = plan_evaluation(
        args.dataset, args.root, categories=args.categories, eval_config=config.eval
    )
    if getattr(args, "shots", None):
        _check_shots(args, doc, plan)
    run_dir = start_run(args, args.out, config)
    detector = load_detector(
        args.checkpoint, device=args.device, weights=args.weights,
        cache_dir=args.cache_dir, use_cache=not args.no_cache,
    )  # fmt: skip
    views = choose_views(detector.config, args.dataset, config.eval.views)
    if views.changed:
        detector = detector.with_views(views.preset)
    logger.info("testing on %s with %s", args.dataset, views.describe())
    for category, ids in plan.skipped.items():
        logger.info("%s: skipped %d sample(s) without ground truth: %s",
                    category, len(ids), ", ".join(ids))  # fmt: skip
    backbone = doc["backbone"]
    header = {
        "setting": f"test on {args.dataset}",
        "backbone": f"{backbone['name']} ({backbone.get('source', 'weights')}; {backbone['fingerprint']})",
        "random_weights": backbone["random_weights"],
        "views": {args.dataset: views.to_dict()},
    }
    hook = html.ReportHook() if html.wanted(args) else None
    try:
        results = evaluate_dataset(
            detector, args.dataset, args.root, out_dir=run_dir, eval_config=config.eval, plan=plan,
            on_prediction=hook and hook(detector),
        )
    except IncompleteEvaluationError as err:
        done = err.results
        if distributed.is_main():
            write_results(run_dir, combine_runs(
                {"test": done}, **header, skipped=done.skipped, failed={err.category: err.cause}
            ))  # fmt: skip
        finished = ", ".join(done) or "none"
        raise Align3DError(
            f"{err}; metrics of the categories finished before it ({finished}) written to "
            f"{run_dir / 'metrics.json'}"
        ) from err
    if not distributed.is_main():
        return 0
    doc = combine_runs({"test": results}, **header, skipped=results.skipped)
    if getattr(args, "shots", None):  # --shots K: zero-shot and K-shot side by side
        from ...evaluate.fewshot import fewshot_protocol, fewshot_thresholds, write_fewshot_tables

        doc["few_shot"] = fewshot_protocol(
            detector, args.dataset, args.root, plan, shots=args.shots, out_dir=run_dir,
            zero_shot=results, eval_config=config.eval, draws=args.draws,
            false_alarm_rate=args.false_alarm_rate,
        )  # fmt: skip
        doc["thresholds"] = fewshot_thresholds(doc["few_shot"])  # drawn dashed by report.html
    write_results(run_dir, doc)
    if "few_shot" in doc:
        write_fewshot_tables(run_dir, doc)
    if hook is not None:
        html.write_report(run_dir, title=f"align3d-ad test on {args.dataset}", doc=doc, hook=hook,
                          config=detector.config, facts=[("tested on", f"{args.dataset} ({args.root})"),
                                                         ("checkpoint", str(args.checkpoint))])  # fmt: skip
    results_summary(args, run_dir, title=f"tested on {args.dataset} ({args.root})")
    return 0
