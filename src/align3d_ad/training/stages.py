"""The two training stages, one epoch at a time (METHOD.md §4 and §5).

Stage 1 trains the aligner so rendering features land on the colour-rendering features of the
same view (with SCR reweighting in the last epochs). Stage 2 freezes the aligner and trains the two
prompt learners, each on its own branch loss, tied by DpCA in the last epochs. Both run on cached
features only. The batch order of epoch e is drawn from ``(seed, stage, e)``, so an interrupted run
resumed from its last completed epoch repeats exactly what an uninterrupted run does.

Under torchrun every rank draws the same batches and takes its share of each (positions rank,
rank + world, ...); the gradients are summed over ranks before every optimiser step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..backbone.encode import stack_features
from ..config import Config, MethodConfig, TrainConfig
from ..errors import ConfigError
from ..model.aligner import FeatureAligner
from ..model.head import ALIGNED, RENDERING, AnomalyHead
from ..model.losses import (
    alignment_loss,
    dpca_loss,
    object_ce,
    pixel_loss,
    point_loss,
    scr_weights,
    view_ce,
)
from ..render import back_project
from ..render.upsample import upsample_bilinear
from .data import TrainItem


def switched_on(epoch: int, epochs: int, last: int) -> bool:
    """Whether a component that runs for the ``last`` epochs of ``epochs`` is on in ``epoch`` (0-based)."""
    return epoch >= epochs - last


def batches(n: int, batch_size: int, *, seed: int, stage: int, epoch: int) -> Iterator[np.ndarray]:
    """Shuffled index batches of one epoch, drawn from (seed, stage, epoch) only."""
    order = np.random.default_rng([seed, stage, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def stage1_epoch(
    aligner: FeatureAligner,
    items: list[TrainItem],
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    train: TrainConfig,
    method: MethodConfig,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """One epoch of cross-modal alignment; returns the mean loss and whether SCR was on."""
    use_scr = method.use_scr and switched_on(epoch, train.stage1_epochs, train.stage1_scr_epochs)
    aligner.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    for idx in batches(len(items), train.stage1_batch_size, seed=seed, stage=1, epoch=epoch):
        part = distributed.split_batch(idx)  # the whole batch in one process
        optimizer.zero_grad(set_to_none=True)
        value = torch.zeros(1, device=device)
        if len(part):
            batch = [items[i] for i in part]
            g_r, t_r = stack_features([b.render for b in batch], device)
            g_c, t_c = stack_features([b.colour for b in batch], device)  # type: ignore[misc]
            n_layers = t_r.shape[2]
            # one row per (sample, view, layer); repeating the global token over layers leaves
            # the mean global term unchanged
            g_r, g_c = (g.unsqueeze(2).expand(-1, -1, n_layers, -1).flatten(0, 2) for g in (g_r, g_c))
            t_r, t_c = t_r.flatten(0, 2), t_c.flatten(0, 2)  # (B*V*L, 1+P, D)
            weights = scr_weights(t_r, t_c, lam=method.scr_lambda) if use_scr else None
            loss = alignment_loss(
                aligner.align_global(g_r), g_c, aligner.align_tokens(t_r), t_c, weights=weights
            )
            # every term is a mean over samples: this rank's share of the batch mean
            loss = loss * (len(part) / len(idx))
            loss.backward()
            value = loss.detach().reshape(1)
        value = distributed.all_reduce_gradients(params, value)
        optimizer.step()
        losses.append(float(value[0]))
    return {"loss": float(np.mean(losses)), "scr": float(use_scr)}


@dataclass
class Stage2Losses:
    """Mean losses of one stage-2 epoch, per branch."""

    branch: dict[str, float]
    dpca: dict[str, float]
    dpca_on: bool

    def to_dict(self) -> dict[str, float]:
        out = {f"loss_{k}": v for k, v in self.branch.items()}
        out.update({f"dpca_{k}": v for k, v in self.dpca.items()})
        out["dpca"] = float(self.dpca_on)
        return out


def epoch_postfix(losses: Mapping[str, float]) -> str:
    """An epoch's losses for the stage bar, to three significant digits: ``loss=1.99, scr=on``
    (stage 1) or ``aligned=3.46, rendering=3.83, dpca=on`` (stage 2)."""
    parts = []
    for key, value in losses.items():
        if key in ("scr", "dpca"):
            parts += [f"{key}=on"] if value else []
        elif key.startswith("loss"):
            parts.append(f"{key.removeprefix('loss_')}={value:.3g}")
    return ", ".join(parts)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (``align_corners=False``) upsampling of (N, C, G, G) maps to S x S.

    ``F.interpolate``, or under deterministic algorithms (``--deterministic``) the same map as two
    matrix products, whose CUDA backward is deterministic (``F.interpolate``'s raises there).
    """
    if torch.are_deterministic_algorithms_enabled():
        return upsample_bilinear(maps, (size, size), align_corners=False)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def check_training_precision(config: Config) -> None:
    """Refuse to train the prompt learners through an fp16 text tower (ConfigError, one line).

    Stage 2 back-propagates through the frozen text tower in the backbone's precision; in fp16,
    without loss scaling, small prompt gradients underflow to zero. bf16 (fp32's exponent range)
    and fp32 train safely; fp16 stays fine for ``test`` and ``predict``.
    """
    learns_prompts = config.method.variant != "clip-zero-shot" and config.train.stage2_epochs > 0
    if config.backbone.precision == "fp16" and learns_prompts:
        raise ConfigError(
            "backbone.precision=fp16 cannot train stage 2: prompt gradients through the fp16 text "
            "tower underflow without loss scaling; train with bf16 or fp32 (fp16 is fine for test "
            "and predict)"
        )


def branch_loss(output, batch: list[TrainItem], device: torch.device) -> torch.Tensor:
    """View CE + object CE + 2D focal/dice + 3D dice (foreground points) of one branch (METHOD.md §5)."""
    view_labels = torch.stack([b.view_labels for b in batch]).to(device)
    labels = torch.tensor([b.label for b in batch], device=device)
    loss = view_ce(output.global_logits, view_labels) + object_ce(output.global_logits, labels)
    probs = output.patch_probs  # (B, V, 2, G, G)
    masks = torch.stack([b.gt_masks for b in batch]).to(device)  # (B, V, S, S)
    size = masks.shape[-1]
    up = upsample(probs.flatten(0, 1), size)
    loss = loss + pixel_loss(up, masks.flatten(0, 1))
    point_terms = [
        point_loss(back_project(probs[i : i + 1], item.projection)[0], item.point_labels.to(device))
        for i, item in enumerate(batch)
    ]
    return loss + torch.stack(point_terms).mean()


def stage2_epoch(
    head: AnomalyHead,
    items: list[TrainItem],
    optimizers: dict[str, torch.optim.Optimizer],
    *,
    epoch: int,
    train: TrainConfig,
    method: MethodConfig,
    seed: int,
    device: torch.device,
    grid: int,
) -> Stage2Losses:
    """One epoch of dual-prompt learning with DpCA in the last ``stage2_dpca_epochs`` epochs."""
    both = ALIGNED in head.branches and RENDERING in head.branches
    use_dpca = both and method.use_dpca and switched_on(
        epoch, train.stage2_epochs, train.stage2_dpca_epochs
    )
    head.learners.train()
    names = list(head.branches)
    params = [p for opt in optimizers.values() for group in opt.param_groups for p in group["params"]]
    sums: dict[str, list[float]] = {b: [] for b in names}
    dpca_sums: dict[str, list[float]] = {b: [] for b in names} if use_dpca else {}
    for idx in batches(len(items), train.stage2_batch_size, seed=seed, stage=2, epoch=epoch):
        part = distributed.split_batch(idx)  # the whole batch in one process
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        values = torch.zeros(2 * len(names), device=device)  # branch losses, then DpCA terms
        if len(part):
            batch = [items[i] for i in part]
            global_, tokens = stack_features([b.render for b in batch], device)
            outs = head(global_, tokens, grid=grid)
            total = torch.zeros((), device=device)
            for branch, output in outs.items():
                k = names.index(branch)
                # every term is a mean over samples: this rank's share of the batch mean
                loss = branch_loss(output, batch, device) * (len(part) / len(idx))
                values[k] = loss.detach()
                if use_dpca and distributed.is_main():  # sample-free: counted once, on rank 0
                    other = RENDERING if branch == ALIGNED else ALIGNED
                    term = dpca_loss(output.text, outs[other].text)
                    values[len(names) + k] = term.detach()
                    loss = loss + method.dpca_gamma * term
                total = total + loss
            total.backward()  # each branch's loss only reaches its own learner (DpCA stops gradients)
        values = distributed.all_reduce_gradients(params, values).tolist()
        for opt in optimizers.values():
            opt.step()
        for k, branch in enumerate(names):
            sums[branch].append(values[k])
            if use_dpca:
                dpca_sums[branch].append(values[len(names) + k])
    return Stage2Losses(
        {b: float(np.mean(v)) for b, v in sums.items()},
        {b: float(np.mean(v)) for b, v in dpca_sums.items()},
        use_dpca,
    )
