"""Calibration folders: few-shot references + thresholds that turn scores into OK/NOK verdicts.

:func:`calibrate` encodes K normal scans with a detector's backbone and views into a
:class:`~align3d_ad.model.fewshot.ReferenceBank`, scores every reference *leave-one-out* (against
a bank of the other K - 1) with the zero-shot + few-shot detector, and sets the object and point
thresholds at a false-alarm rate on those normal scores (:mod:`~align3d_ad.model.thresholds`), or,
given labelled defective scans, at their F1-best value. A calibration folder holds
``calibration.json`` (checkpoint fingerprint, backbone, views, K, the references' content hashes,
the thresholds and how they were chosen) and ``references.safetensors``; loading it with another
checkpoint, backbone or view set is refused with one line. docs/calibration.md has the statistics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed
from ..backbone.encode import ViewEncoder
from ..data.prepare import PreparedSample
from ..errors import CheckpointMismatchError, ConfigError
from .checkpoint import CHECKPOINT_JSON, HEAD_FILE, read_checkpoint, read_folder_document
from .fewshot import (
    BANK_FILE,
    FEWSHOT,
    MAX_BANK_TOKENS,
    ZERO_SHOT,
    ReferenceBank,
    fuse_fewshot,
)  # fmt: skip
from .thresholds import MARGIN, Threshold, check_rate, f1_threshold, rate_threshold

#: A :class:`~align3d_ad.model.detector.Detector` (not imported here: the detector loads
#: calibrations, so this module must not import it).
Detector = Any

logger = logging.getLogger(__name__)

CALIBRATION_JSON = "calibration.json"
FORMAT = 1
OK, ANOMALOUS = "ok", "anomalous"
#: A reference whose leave-one-out object score lies this many robust deviations (1.4826 MAD)
#: above the median of the others' is reported as probably not the same part.
OUTLIER_DEVIATIONS = 5.0
#: The post-processing few-shot references are scored with (the reference style has no
#: few-shot maps; docs/calibration.md).
NATIVE = "native"


def postprocess_note(postprocess: str, checkpoint: str | Path | None = None) -> str | None:
    """The warning line for a ``method.postprocess: reference`` checkpoint used with references
    (they are scored with the native post-processing), else None."""
    if postprocess == NATIVE:
        return None
    who = f"checkpoint {checkpoint}" if checkpoint else "the checkpoint"
    return (
        f"{who} has method.postprocess: {postprocess}, which has no few-shot maps: with a "
        "calibration its scans are scored with the native post-processing (the calibration's "
        "thresholds are native scores too; docs/calibration.md)"
    )


def checkpoint_fingerprint(run_dir: str | Path) -> str:
    """``sha256:<hex16>`` of the checkpoint's head tensors and config (what its scores depend on)."""
    run_dir = Path(run_dir)
    digest = hashlib.sha256((run_dir / HEAD_FILE).read_bytes())
    config = json.loads((run_dir / CHECKPOINT_JSON).read_text(encoding="utf-8")).get("config")
    digest.update(json.dumps(config, sort_keys=True).encode())
    return f"sha256:{digest.hexdigest()[:16]}"


def views_record(encoder: ViewEncoder) -> dict[str, Any]:
    """The views and image size a bank's tokens were rendered with."""
    return {
        "preset": encoder.preset.name,
        "rotations": np.round(encoder.preset.rotations, 9).tolist(),
        "pre_transform": np.round(encoder.preset.pre_transform, 9).tolist(),
        "image_size": encoder.settings.image_size,
    }


@dataclass
class Calibration:
    """Thresholds, the normal scores they came from, and what they are valid for."""

    object_threshold: Threshold
    point_threshold: Threshold
    false_alarm_rate: float
    fewshot_weight: float
    checkpoint: dict[str, str]
    backbone: dict[str, str]
    views: dict[str, Any]
    references: list[dict[str, Any]]
    normal_object_scores: list[float]
    bank: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    postprocess: str = NATIVE  #: the post-processing the scores and thresholds come from

    @property
    def num_references(self) -> int:
        return len(self.references)

    def verdict(self, object_score: float) -> str:
        """``anomalous`` when the object score is above the threshold, else ``ok``."""
        return ANOMALOUS if object_score > self.object_threshold.value else OK

    def mask(self, point_scores: np.ndarray) -> np.ndarray:
        """bool: the points scored above the point threshold."""
        return np.asarray(point_scores) > self.point_threshold.value

    def spread_warning(self, object_scores: Sequence[float]) -> str | None:
        """A warning when the references' leave-one-out scores spread more than ``object_scores``
        (three or more scans): references of another part than the scans tested."""
        if len(object_scores) < 3 or len(self.normal_object_scores) < 2:
            return None
        ref, test = np.std(self.normal_object_scores), np.std(object_scores)
        if ref <= test:
            return None
        return (
            f"the references' leave-one-out object scores spread more (std {ref:.4g}) than the "
            f"{len(object_scores)} scans scored (std {test:.4g}): are the references of this part?"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "checkpoint": self.checkpoint,
            "backbone": self.backbone,
            "views": self.views,
            "K": self.num_references,
            "references": self.references,
            "fewshot_weight": self.fewshot_weight,
            "false_alarm_rate": self.false_alarm_rate,
            "thresholds": {
                "object": self.object_threshold.to_dict(),
                "point": self.point_threshold.to_dict(),
            },
            "normal_object_scores": self.normal_object_scores,
            "bank": self.bank,
            "warnings": self.warnings,
            "postprocess": self.postprocess,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: Path) -> Calibration:
        try:
            if int(doc["format"]) > FORMAT:
                raise ConfigError(f"{path}: calibration format {doc['format']} is newer than {FORMAT}")
            th = doc["thresholds"]
            return cls(
                object_threshold=Threshold(**th["object"]),
                point_threshold=Threshold(**th["point"]),
                false_alarm_rate=float(doc["false_alarm_rate"]),
                fewshot_weight=float(doc["fewshot_weight"]),
                checkpoint=dict(doc["checkpoint"]), backbone=dict(doc["backbone"]),
                views=dict(doc["views"]), references=list(doc["references"]),
                normal_object_scores=[float(v) for v in doc["normal_object_scores"]],
                bank=dict(doc.get("bank", {})), warnings=list(doc.get("warnings", [])),
                postprocess=str(doc.get("postprocess", NATIVE)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{path}: not a calibration written by align3d-ad ({err!r})") from err


def read_calibration(path: str | Path) -> Calibration:
    """The ``calibration.json`` of a calibration folder (ConfigError naming it when invalid)."""
    doc, doc_path = read_folder_document(path, CALIBRATION_JSON, what="calibration",
                                         command="calibrate")  # fmt: skip
    return Calibration.from_dict(doc, doc_path)


def check_calibration(cal: Calibration, folder: Path, *, checkpoint: str | Path, encoder) -> None:
    """Refuse a calibration made with another checkpoint, backbone or view set (one line)."""
    want = checkpoint_fingerprint(checkpoint)
    if cal.checkpoint.get("fingerprint") != want:
        raise CheckpointMismatchError(
            f"calibration {folder} was made with checkpoint {cal.checkpoint.get('path')} "
            f"({cal.checkpoint.get('fingerprint')}), got {checkpoint} ({want}); run "
            "`align3d-ad calibrate` with this checkpoint"
        )
    bb = encoder.backbone
    if (cal.backbone.get("name"), cal.backbone.get("fingerprint")) != (bb.name, bb.fingerprint):
        raise CheckpointMismatchError(
            f"calibration {folder} was made with backbone {cal.backbone.get('name')} (weights "
            f"{cal.backbone.get('fingerprint')}), got {bb.name} (weights {bb.fingerprint})"
        )
    if views_record(encoder) != cal.views:
        raise CheckpointMismatchError(
            f"calibration {folder} was made with views {cal.views.get('preset')} (image size "
            f"{cal.views.get('image_size')}), the detector renders {encoder.preset.name} (image "
            f"size {encoder.settings.image_size}); calibrate with the views you predict with"
        )


def load_calibration(
    path: str | Path, *, checkpoint: str | Path, encoder: ViewEncoder
) -> tuple[Calibration, ReferenceBank]:
    """The checked calibration and reference bank of a calibration folder."""
    folder = Path(path)
    cal = read_calibration(folder)
    check_calibration(cal, folder, checkpoint=checkpoint, encoder=encoder)
    method = read_checkpoint(checkpoint)["config"].get("method") or {}
    note = postprocess_note(str(method.get("postprocess", NATIVE)), checkpoint)
    if note and distributed.is_main():  # the same for every rank: said once
        logger.warning("%s", note)
    bank = ReferenceBank.load(folder / BANK_FILE)
    if bank.hashes != [r.get("content_hash") for r in cal.references]:
        raise ConfigError(f"{folder / BANK_FILE}: its references are not those of {CALIBRATION_JSON}")
    return cal, bank


def save_calibration(folder: str | Path, cal: Calibration, bank: ReferenceBank) -> Path:
    """Write the folder whole or not at all (a new folder, or replacing an earlier calibration)."""
    folder = Path(folder)
    if folder.exists() and not (folder / CALIBRATION_JSON).is_file() and any(folder.iterdir()):
        raise ConfigError(f"--out {folder} holds other files than a calibration; choose another")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        bank.save(tmp / BANK_FILE)
        (tmp / CALIBRATION_JSON).write_text(json.dumps(cal.to_dict(), indent=2) + "\n")
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _predictions(detector: Detector, prepared, exclude=None) -> list:
    """Predictions of prepared samples, in batches of 4."""
    out = []
    for s in range(0, len(prepared), 4):
        ex = None if exclude is None else exclude[s : s + 4]
        out.extend(detector.predict_prepared(prepared[s : s + 4], exclude=ex))
    return out


def _scores(detector: Detector, prepared, exclude=None) -> tuple[list[float], list[np.ndarray]]:
    """Object scores and foreground point scores of prepared samples."""
    preds = _predictions(detector, prepared, exclude)
    return [p.object_score for p in preds], [p.point_scores[p.foreground] for p in preds]


def fit_scales(
    detector: Detector, bank: ReferenceBank, references: list[PreparedSample]
) -> tuple[ReferenceBank, list[float], list[np.ndarray]]:
    """The bank with its fusion scales, and the references' leave-one-out fused object and
    foreground point scores (K >= 2; with K = 1: the zero-shot ones, scales (s_z, s_z)).

    ``s_z`` is the standard deviation of the references' zero-shot point scores, ``s_f`` that of
    their leave-one-out few-shot point scores: dividing by them puts both maps on one scale.
    """
    if len(references) < 2:
        preds = _predictions(detector.with_references(None), references)
        zero = np.concatenate([p.point_scores[p.foreground] for p in preds])
        s_z = max(float(zero.std()), 1e-6)
        bank.scales = (s_z, s_z)
        return bank, [p.object_score for p in preds], [p.point_scores[p.foreground] for p in preds]
    det = detector.with_references(bank, warn=False)
    preds = _predictions(det, references, exclude=list(range(len(references))))
    zero = [p.branch_point_scores[ZERO_SHOT][p.foreground] for p in preds]
    few = [p.branch_point_scores[FEWSHOT][p.foreground] for p in preds]
    scales = (max(float(np.concatenate(zero).std()), 1e-6),
              max(float(np.concatenate(few).std()), 1e-6))  # fmt: skip
    bank.scales = scales
    objs, points = [], []
    for p, z, f in zip(preds, zero, few):  # the references' own fused scores (K of them)
        point, obj = fuse_fewshot(
            torch.from_numpy(z), torch.tensor(p.zero_shot_object), torch.from_numpy(f),
            weight=det.fewshot_weight, scales=scales,
        )  # fmt: skip
        objs.append(float(obj))
        points.append(point.numpy())
    return bank, objs, points


def build_bank(
    detector: Detector, prepared: list[PreparedSample], *, max_tokens: int = MAX_BANK_TOKENS
) -> ReferenceBank:
    """The reference bank of prepared normal scans, encoded with the detector's backbone/views."""
    samples = [p.sample for p in prepared]
    feats = [f.tokens for s in range(0, len(samples), 4)
             for f in detector.encoder.encode(samples[s : s + 4])]  # fmt: skip
    hashes = [p.original.content_hash() for p in prepared]
    return ReferenceBank.from_features(feats, hashes, max_tokens=max_tokens, seed=detector.config.seed)


def calibrate(
    detector: Detector,
    references: list[PreparedSample],
    *,
    false_alarm_rate: float = 0.01,
    anomalous: list[PreparedSample] | None = None,
    names: Sequence[str] | None = None,
    checkpoint: str | Path | None = None,
    max_tokens: int = MAX_BANK_TOKENS,
) -> tuple[Calibration, ReferenceBank]:
    """Bank + leave-one-out thresholds of K >= 2 normal references (F1-best with ``anomalous``)."""
    rate = check_rate(false_alarm_rate)
    if len(references) < 2:
        raise ConfigError(
            f"calibration needs at least 2 normal references (each is scored against the others), "
            f"got {len(references)}"
        )
    names = list(names) if names is not None else [p.original.sample_id for p in references]
    bank = build_bank(detector, references, max_tokens=max_tokens)
    bank, objs, points = fit_scales(detector, bank, references)
    det = detector.with_references(bank, warn=False)
    normal_points = np.concatenate(points) if points else np.zeros(0)
    warnings_: list[str] = []
    obj_t = rate_threshold(objs, rate)
    point_t = rate_threshold(normal_points, rate)
    if anomalous:
        a_objs, a_points = _scores(det, anomalous)
        obj_t = f1_threshold([*objs, *a_objs], [0] * len(objs) + [1] * len(a_objs))
        labelled = [p.original.point_labels is not None for p in anomalous]
        if all(labelled):
            gt = [p.original.point_labels[p.foreground] for p in anomalous]
            point_t = f1_threshold(
                np.concatenate([normal_points, *a_points]),
                np.concatenate([np.zeros(normal_points.size, bool), *gt]),
            )
    if obj_t.how == MARGIN:
        warnings_.append(
            f"a false-alarm rate of {rate:g} cannot be measured on {len(objs)} references (the "
            f"smallest is about 1/{len(objs)} = {1 / len(objs):.3g}); the object threshold uses the "
            "margin rule (max or mean + z*std of the references, docs/calibration.md)"
        )
    warnings_.extend(_outliers(objs, names))
    note = postprocess_note(detector.config.method.postprocess, checkpoint)
    if note:
        warnings_.append(note)
    backbone = detector.backbone
    cal = Calibration(
        object_threshold=obj_t, point_threshold=point_t, false_alarm_rate=rate,
        fewshot_weight=det.fewshot_weight,
        checkpoint={"path": str(checkpoint), "fingerprint":
                    checkpoint_fingerprint(checkpoint) if checkpoint else ""},
        backbone={"name": backbone.name, "fingerprint": backbone.fingerprint},
        views=views_record(detector.encoder),
        references=[{"name": n, "content_hash": h, "loo_object_score": o}
                    for n, h, o in zip(names, bank.hashes, objs)],
        normal_object_scores=[float(o) for o in objs],
        bank={"tokens": int(bank.tokens.shape[1]), "layers": int(bank.tokens.shape[0]),
              "max_tokens": max_tokens, "coreset": bank.coreset, "scales": list(bank.scales),
              "normal_points": int(normal_points.size)},
        warnings=warnings_,
    )  # fmt: skip
    return cal, bank


def _outliers(objs: list[float], names: list[str]) -> list[str]:
    """Warnings for references scoring far above the others (probably another part)."""
    s = np.asarray(objs, dtype=np.float64)
    if s.size < 3:
        return []
    out = []
    for k in np.flatnonzero(s > np.median(s)):  # a handful of references, not points
        others = np.delete(s, k)
        med = np.median(others)
        dev = 1.4826 * np.median(np.abs(others - med))
        if s[k] > med + OUTLIER_DEVIATIONS * max(dev, 1e-3 * max(abs(med), 1e-6)):
            out.append(
                f"reference {names[k]} scores far above the others (leave-one-out object score "
                f"{s[k]:.4g}, others' median {med:.4g}): is it of the same part?"
            )
    return out
