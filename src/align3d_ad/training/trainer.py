"""Train a detector on auxiliary categories: read, prepare, cache features, stage 1, stage 2.

The Python API behind ``align3d-ad train``::

    result = train_model(load_config("configs/demo.yaml"), "runs/demo")
    detector = Detector.from_checkpoint(result.run_dir)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..backbone import PromptableTextEncoder, load_backbone
from ..backbone.loader import Backbone
from ..config import Config
from ..data import get_dataset
from ..data.prepare import PreparedSample, prepare_sample
from ..device import set_deterministic
from ..errors import CheckpointMismatchError, ConfigError
from ..model.checkpoint import (
    STATE_FILE,
    backbone_spec,
    check_backbone,
    check_tensors,
    load_state,
    make_encoder,
    save_checkpoint,
)
from ..model.head import AnomalyHead
from ..progress import SHOWN_IN_BAR, progress
from .data import build_train_items
from .reference import reference_training_samples
from .resume import DONE_STAGE, check_resumable, on_main_rank
from .stages import check_training_precision, epoch_postfix, stage1_epoch, stage2_epoch

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    head: AnomalyHead | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extraction_seconds: float = 0.0
    epoch_seconds: dict[str, list[float]] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    already_trained: bool = False  #: a resumed run that had finished: nothing was trained or written


def load_training_samples(config: Config, *, root: str | Path | None = None) -> list[PreparedSample]:
    """Read and prepare the labelled samples of the auxiliary categories."""
    data = config.data
    root = root or data.root
    if root is None:
        raise ConfigError("data.root must be set (pass --root DIR)")
    if not data.train_categories:
        raise ConfigError("data.train_categories must name at least one auxiliary category")
    reader = get_dataset(data.dataset, root, **data.reader_options)
    split = data.train_split or reader.labelled_split
    refs = []
    for category in data.train_categories:
        found = reader.refs(category, split)
        refs.extend(found[: data.limit_per_split] if data.limit_per_split else found)
    if not refs:
        raise ConfigError(f"no {split} samples in {root} for categories {list(data.train_categories)}")
    return [
        prepare_sample(reader.load(ref), data, seed=config.seed)
        for ref in progress(refs, desc="reading", total=len(refs))
    ]


def _optimizer(params, config: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.train.lr, betas=tuple(config.train.betas))


def _load_resume_state(
    path: Path, state: dict[str, Any], head: AnomalyHead,
    optimizers: dict[str, torch.optim.Optimizer | None],
) -> None:  # fmt: skip
    """Load the head and optimiser states of ``state`` (read from ``path``), checked."""
    check_tensors(path, state["head"], head)
    head.load_state_dict(state["head"])
    for name, opt in optimizers.items():
        if opt is None:
            continue
        if name not in state["optimizers"]:
            raise CheckpointMismatchError(f"{path}: holds no optimiser state for {name!r}")
        try:
            opt.load_state_dict(state["optimizers"][name])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointMismatchError(
                f"{path}: the optimiser state of {name!r} does not fit the head ({err})"
            ) from err


def _before(record: Any, progress_state: dict[str, Any]) -> bool:
    """Whether a history ``record`` is of an epoch finished at ``progress_state``."""
    at = (record.get("stage"), record.get("epoch")) if isinstance(record, dict) else None
    if at is None or not all(isinstance(v, int) for v in at):
        return False
    return at <= (progress_state["stage"], progress_state["epoch"])


def train_model(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    backbone: Backbone | None = None,
    samples: list[PreparedSample] | None = None,
) -> TrainResult:
    """Train both stages as ``config`` says and write the run folder (checkpoint every epoch).

    Args:
        config: The resolved configuration.
        run_dir: The run folder (created when missing; the command line picks a fresh one with
            :func:`align3d_ad.app.runs.new_run_dir`).
        resume: Continue from the last completed epoch saved in ``run_dir``, which must hold a
            run trained with the same config (see :func:`align3d_ad.training.resume.check_resumable`);
            a finished run is left as it is (``already_trained`` is set and nothing is written).
        backbone: An already loaded backbone (default: load ``config.backbone``).
        samples: Already prepared training samples (default: read ``config.data``).

    Under torchrun (see :mod:`align3d_ad.distributed`) the ranks share the feature extraction
    through the feature cache and each optimiser step's batch; rank 0 writes the checkpoints.
    """
    run_dir = Path(run_dir)
    check_training_precision(config)  # fp16 stage 2 would underflow
    set_deterministic(config.deterministic)
    state, doc = None, None
    if resume:  # checked and read by rank 0 only, so the run folder need not be shared
        doc, state = on_main_rank(lambda: (check_resumable(run_dir, config), load_state(run_dir)))
        if state["progress"]["stage"] >= DONE_STAGE:
            logger.info("%s is already trained (both stages finished); nothing to resume", run_dir)
            return TrainResult(run_dir, already_trained=True)
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    backbone = backbone or load_backbone(backbone_spec(config.backbone), device=config.device)
    device = backbone.device
    torch.manual_seed(config.seed)
    head = AnomalyHead(PromptableTextEncoder(backbone), backbone.embed_dim, config.method).to(device)
    opt1 = _optimizer(head.aligner.parameters(), config) if head.aligner is not None else None
    opt2 = {b: _optimizer(learner.parameters(), config) for b, learner in head.learners.items()}
    trainable = [p for p in head.parameters() if p.requires_grad]
    distributed.broadcast_parameters(trainable)  # every rank starts from rank 0's values
    progress_state = {"stage": 1, "epoch": 0}
    if state is not None:
        check_backbone(doc, backbone, run_dir)
        _load_resume_state(run_dir / STATE_FILE, state, head, {"stage1": opt1, **opt2})
        progress_state = state["progress"]
        logger.info("resuming %s at stage %d, epoch %d", run_dir, progress_state["stage"],
                    progress_state["epoch"])  # fmt: skip

    samples = samples if samples is not None else load_training_samples(config)
    samples = reference_training_samples(samples, config)  # as the test resamples them
    encoder = make_encoder(config, backbone)
    result = TrainResult(run_dir)
    if doc is not None:  # the epochs finished before the interruption
        result.history = [dict(r) for r in doc.get("history", []) if _before(r, progress_state)]
    start = time.perf_counter()
    needs_colour = head.aligner is not None and config.train.stage1_epochs > 0
    items = build_train_items(samples, encoder, with_colour=needs_colour, seed=config.seed)
    result.extraction_seconds = time.perf_counter() - start
    result.cache_hits, result.cache_misses = encoder.cache.hits, encoder.cache.misses
    training_data = {
        "dataset": config.data.dataset, "root": str(config.data.root),
        "categories": list(config.data.train_categories),
        "samples": len(items), "anomalous": sum(i.label for i in items),
        "protocol": config.protocol.name,
    }  # fmt: skip

    def checkpoint(stage: int, epoch: int, record: dict[str, Any] | None) -> None:
        nonlocal progress_state
        progress_state = {"stage": stage, "epoch": epoch}
        if record is not None:
            result.history.append(record)
            logger.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in record.items()), extra=SHOWN_IN_BAR)  # fmt: skip
        if not distributed.is_main():  # all ranks hold the same head; rank 0 writes it
            return
        save_checkpoint(
            run_dir, head, config=config, backbone=backbone, progress=progress_state,
            training_data=training_data, optimizers={"stage1": opt1, **opt2} if opt1 else opt2,
            history=result.history,
        )  # fmt: skip

    grid = encoder.grid_size
    if head.aligner is not None and progress_state["stage"] == 1:
        bar = progress(range(progress_state["epoch"], config.train.stage1_epochs), desc="stage 1",
                       leave=True)  # fmt: skip
        for epoch in bar:
            t0 = time.perf_counter()
            losses = stage1_epoch(head.aligner, items, opt1, epoch=epoch, train=config.train,
                                  method=config.method, seed=config.seed, device=device)  # fmt: skip
            result.epoch_seconds.setdefault("stage1", []).append(time.perf_counter() - t0)
            checkpoint(1, epoch + 1, {"stage": 1, "epoch": epoch + 1, **losses})
            bar.set_postfix_str(epoch_postfix(losses))
        progress_state = {"stage": 2, "epoch": 0}
    if head.aligner is not None:
        head.aligner.requires_grad_(False).eval()
    if progress_state["stage"] == 1:
        progress_state = {"stage": 2, "epoch": 0}
    if head.trainable:
        bar = progress(range(progress_state["epoch"], config.train.stage2_epochs), desc="stage 2",
                       leave=True)  # fmt: skip
        for epoch in bar:
            t0 = time.perf_counter()
            losses = stage2_epoch(head, items, opt2, epoch=epoch, train=config.train,
                                  method=config.method, seed=config.seed, device=device, grid=grid)
            result.epoch_seconds.setdefault("stage2", []).append(time.perf_counter() - t0)
            checkpoint(2, epoch + 1, {"stage": 2, "epoch": epoch + 1, **losses.to_dict()})
            bar.set_postfix_str(epoch_postfix(losses.to_dict()))
    checkpoint(3, 0, None)  # stage 3 = done
    result.head = head.eval()
    return result
