"""The few-shot protocol of ``align3d-ad test --shots K``, and decision metrics at thresholds.

For every tested category, K normal references are drawn (seeded, without replacement) from the
category's normal training split (:data:`NORMAL_SPLIT`: MVTec 3D-AD ``train/good``, Eyecandies
``train``, Real3D-AD ``train`` templates), three times by default. Each draw is calibrated
leave-one-out (:func:`~align3d_ad.model.calibration.calibrate`; K >= 2), the test split is scored
with the zero-shot + few-shot detector, and the threshold-free metrics and the decision metrics at
the calibrated thresholds (false-alarm rate, miss rate, precision, recall, F1 of the verdicts;
point-mask IoU) are averaged over the draws. With K = 1 there is no leave-one-out calibration:
the decision metrics are undefined (NaN) and only the threshold-free metrics are reported.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed
from .._atomic import atomic_write_text
from ..config import EvalConfig
from ..data.prepare import prepare_sample
from ..errors import ConfigError
from .runner import EvaluationPlan, evaluate_dataset
from .scores import CategoryScores
from .tables import _fmt, headline, mean_scores

logger = logging.getLogger(__name__)

#: The normal training split of every reader (all three benchmarks call it ``train``).
NORMAL_SPLIT = "train"
#: Draws of K references averaged by default.
DRAWS = 3
DECISION_METRICS = ("false_alarm_rate", "miss_rate", "precision", "recall", "f1", "mask_iou")


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else math.nan


def decision_metrics(
    scores: CategoryScores, object_threshold: float, point_threshold: float
) -> dict[str, float]:
    """Verdict metrics (anomalous = object score above the threshold) and the point-mask IoU
    (points above the point threshold vs the ground truth, pooled over the category's points)."""
    labels = np.asarray(scores.labels, dtype=bool)
    flagged = np.asarray(scores.object_scores, dtype=np.float64) > object_threshold
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    fn = int((~flagged & labels).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    points = np.concatenate(scores.point_scores) if scores.point_scores else np.zeros(0)
    gt = np.concatenate(scores.point_labels) if scores.point_labels else np.zeros(0, bool)
    mask = points > point_threshold
    return {
        "false_alarm_rate": _ratio(fp, int((~labels).sum())),
        "miss_rate": _ratio(fn, int(labels.sum())),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mask_iou": _ratio(int((mask & gt).sum()), int((mask | gt).sum())),
    }


def _normal_refs(reader, category: str, shots: int) -> list:
    """The normal training samples of ``category`` (ConfigError when fewer than ``shots``)."""
    refs = [r for r in reader.refs(category, NORMAL_SPLIT) if r.label in (0, None)]
    if len(refs) < shots:
        raise ConfigError(
            f"--shots {shots} needs {shots} normal {NORMAL_SPLIT} samples of {category}, "
            f"got {len(refs)} in {reader.root}"
        )
    return refs


def check_shots(plan: EvaluationPlan, shots: int) -> None:
    """Refuse ``--shots K`` before anything is scored when a planned category has fewer than K
    normal training samples (one line naming the first such category)."""
    for category in plan.refs:
        _normal_refs(plan.reader, category, shots)


def draw_references(reader, category: str, shots: int, *, seed: int, draw: int) -> list:
    """K normal references of ``category`` drawn from its normal training split (seeded)."""
    refs = _normal_refs(reader, category, shots)
    rng = np.random.default_rng([seed, draw, zlib.crc32(category.encode())])
    return [refs[i] for i in sorted(rng.choice(len(refs), size=shots, replace=False))]


def draw_folder(shots: int, draw: int) -> str:
    """The sub-run folder (relative, posix) of one draw's scores: ``shots<K>/draw<d>``."""
    return f"shots{shots}/draw{draw}"


def fewshot_thresholds(few: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The calibrated thresholds of every draw in the ``thresholds`` form the HTML report reads:
    ``{"shots<K>/draw<d>/<category>": {"object": t, "point": t}}`` (K = 1: none, uncalibrated)."""
    out = {}
    for category, runs in few["draws_detail"].items():
        for draw, entry in enumerate(runs):
            if "thresholds" in entry:
                out[f"{draw_folder(few['shots'], draw)}/{category}"] = {
                    level: float(entry["thresholds"][level]["value"]) for level in ("object", "point")
                }
    return out


def fewshot_protocol(
    detector: Any,
    dataset: str,
    root: str | Path,
    plan: EvaluationPlan,
    *,
    shots: int,
    out_dir: str | Path,
    zero_shot: dict[str, Any],
    eval_config: EvalConfig | None = None,
    draws: int = DRAWS,
    false_alarm_rate: float = 0.01,
) -> dict[str, Any]:
    """Score the plan's categories with K-shot references (``draws`` draws averaged).

    Returns the ``few_shot`` entry of ``metrics.json``: ``{"shots", "draws", "false_alarm_rate",
    "categories": {category: {variant: {metric}}, "decision": {...}}, "mean", "zero_shot_mean",
    "draws_detail": {category: [{"references", "thresholds", metrics...}]}}``.
    """
    from ..model.calibration import build_bank, calibrate, fit_scales

    if shots < 1 or draws < 1:
        raise ConfigError(f"--shots and draws must be >= 1, got {shots} and {draws}")
    reader, config = plan.reader, detector.config
    if shots < 2:
        logger.info("--shots 1: one reference per draw sharpens the scores but cannot be calibrated "
                    "(leave-one-out needs K >= 2): no thresholds, no decision metrics")
    out_dir = Path(out_dir)
    categories: dict[str, Any] = {}
    detail: dict[str, list] = {}
    for category, refs in plan.refs.items():
        runs: list[dict[str, Any]] = []
        for draw in range(draws):
            chosen = draw_references(reader, category, shots, seed=config.seed, draw=draw)
            prepared = [prepare_sample(reader.load(r), config.data, seed=config.seed)
                        for r in chosen]  # fmt: skip
            if shots >= 2:
                cal, bank = calibrate(detector, prepared, false_alarm_rate=false_alarm_rate,
                                      names=[r.sample_id for r in chosen])  # fmt: skip
            else:
                cal, bank = None, fit_scales(detector, build_bank(detector, prepared), prepared)[0]
            folder = out_dir / draw_folder(shots, draw)
            sub = EvaluationPlan(reader, plan.split, {category: refs}, {})
            result = evaluate_dataset(
                detector.with_references(bank, cal, warn=False), dataset, root, out_dir=folder,
                eval_config=eval_config, plan=sub,
            )[category]  # fmt: skip
            entry = {"references": [r.sample_id for r in chosen], **result}
            if cal is not None and distributed.is_main():  # rank 0 saved the scores
                saved = CategoryScores.load(folder / "scores" / f"{category}.npz")
                t_obj, t_pt = cal.object_threshold.value, cal.point_threshold.value
                entry["decision"] = decision_metrics(saved, t_obj, t_pt)
                entry["thresholds"] = {"object": cal.object_threshold.to_dict(),
                                       "point": cal.point_threshold.to_dict()}  # fmt: skip
            else:
                entry["decision"] = dict.fromkeys(DECISION_METRICS, math.nan)
            runs.append(entry)
        detail[category] = runs
        categories[category] = mean_scores(
            {str(i): {k: v for k, v in r.items() if isinstance(v, dict) and k != "thresholds"}
             for i, r in enumerate(runs)}
        )  # fmt: skip
        logger.info("%s, %d-shot (%d draws): %s", category, shots, draws,
                    _line(categories[category]))  # fmt: skip
    return {
        "shots": shots, "draws": draws, "false_alarm_rate": false_alarm_rate,
        "normal_split": NORMAL_SPLIT, "categories": categories, "mean": mean_scores(categories),
        "zero_shot_mean": mean_scores(zero_shot), "draws_detail": detail,
    }  # fmt: skip


def _line(scores: dict[str, dict[str, float]]) -> str:
    o, f, d = scores["object"], scores["foreground"], scores.get("decision", {})
    return (f"O-AUROC {o['o_auroc']:.3f}  P-AUROC {f['p_auroc']:.3f}  "
            f"F1 {d.get('f1', math.nan):.3f}  IoU {d.get('mask_iou', math.nan):.3f}")  # fmt: skip


def fewshot_markdown(doc: dict[str, Any]) -> str:
    """The side-by-side section of metrics.md: zero-shot and K-shot, then the decisions."""
    few = doc["few_shot"]
    k = few["shots"]
    lines = [f"## Zero-shot vs {k}-shot (references from `{few['normal_split']}`, "
             f"{few['draws']} draws averaged; points only)", "",
             "| category | O-AUROC 0 | O-AUROC K | P-AUROC 0 | P-AUROC K | AUPRO 0 | AUPRO K |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    zero = {**doc.get("categories", {}), "**mean**": doc.get("mean", {})}
    shot = {**few["categories"], "**mean**": few["mean"]}
    for name, scores in shot.items():
        z, s = headline(zero.get(name, {}), "foreground"), headline(scores, "foreground")
        cells = [f"{_fmt(z[m])} | {_fmt(s[m])}" for m in ("o_auroc", "p_auroc", "aupro")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if k < 2:
        return "\n".join([*lines, "", "### Decisions: none with K = 1 (leave-one-out calibration "
                           "needs K >= 2 references, as `calibrate` does)"]) + "\n"
    lines += ["", f"### Decisions at the calibrated thresholds (false-alarm rate "
              f"{few['false_alarm_rate']:g}, leave-one-out on the {k} references)", "",
              "| category | false alarms | misses | precision | recall | F1 | mask IoU |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, scores in shot.items():
        d = scores.get("decision", {})
        lines.append(f"| {name} | " + " | ".join(_fmt(d.get(m, math.nan))
                                                  for m in DECISION_METRICS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_fewshot_tables(out_dir: str | Path, doc: dict[str, Any]) -> None:
    """Add the few-shot rows to metrics.csv (run ``<K>-shot``) and its section to metrics.md."""
    out_dir = Path(out_dir)
    few = doc["few_shot"]
    rows = []
    for category, scores in {**few["categories"], "mean": few["mean"]}.items():
        for variant, metrics in scores.items():
            for metric, value in metrics.items():
                shown = "" if math.isnan(value) else f"{value:.6f}"
                rows.append(f"{few['shots']}-shot,{category},{variant},{metric},{shown}\n")
    csv_path, md_path = out_dir / "metrics.csv", out_dir / "metrics.md"
    atomic_write_text(csv_path, csv_path.read_text(encoding="utf-8") + "".join(rows))
    md = md_path.read_text(encoding="utf-8")
    atomic_write_text(md_path, md.rstrip("\n") + "\n\n" + fewshot_markdown(doc))
