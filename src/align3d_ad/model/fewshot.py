"""Few-shot normal references: a memory bank of the per-view patch tokens of K good scans.

Each test patch token gets the few-shot score ``1 - max cos(token, bank)``: its distance to the
nearest token of any view of any reference, per V-V layer, averaged over the layers (as the
zero-shot patch probabilities are). The bank holds the raw rendering features (the frozen
backbone's V-V patch tokens, the input of branch R), not the aligner's outputs: those are a
projection trained on auxiliary categories to separate normal from anomalous *relative to the
prompts*, while nearest-neighbour matching needs features that keep the local appearance of a
part, which the frozen features do (the PatchCore recipe); one bank then serves both branches and
does not depend on the head. Views are pooled (a token may match any view of any reference): scans
of a part are never posed exactly alike, and pooling keeps the score pose-tolerant.

The bank's size does not depend on the number of points (a 2.7M-point scan gives the same
V x P tokens as a 30k one), only on K x V x P. Above :data:`MAX_BANK_TOKENS` tokens the bank is
reduced to that many by greedy k-centre coreset selection (PatchCore) on a random 64-d projection.

On disk: ``references.safetensors`` with fp16 ``tokens`` (L, M, D), int64 ``owner`` (M,) (which
reference each token came from) and the references' content hashes in the metadata; no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .._atomic import atomic_path
from ..errors import ConfigError, ShapeError

BANK_FILE = "references.safetensors"
#: Largest bank (tokens per layer) kept as is; bigger ones get a k-centre coreset of this size.
MAX_BANK_TOKENS = 50_000
#: Dimension of the random projection the coreset selection measures distances in.
CORESET_DIM = 64
#: Name of the few-shot map in :attr:`~align3d_ad.model.detector.Prediction.branch_point_scores`.
FEWSHOT = "fewshot"
#: Name of the zero-shot fused map there (with references).
ZERO_SHOT = "zero_shot"
#: Test tokens compared with the bank at once (bounds the (chunk, M) similarity matrix).
SCORE_CHUNK = 1024


def patch_tokens(tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(L, V*P, D) float32 L2-normalised patch tokens (CLS dropped) of one scan's (V, L, 1+P, D)."""
    t = tokens.cpu() if isinstance(tokens, torch.Tensor) else torch.tensor(np.asarray(tokens))
    if t.dim() != 4:
        raise ShapeError(f"tokens must have shape (V, L, 1+P, D), got {tuple(t.shape)}")
    t = t[:, :, 1:].float().permute(1, 0, 2, 3)  # (L, V, P, D)
    return F.normalize(t.reshape(t.shape[0], -1, t.shape[-1]), dim=-1)


def kcenter_coreset(features: torch.Tensor, size: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of a greedy k-centre coreset of ``size`` rows of ``features`` (M, D), sorted."""
    m = features.shape[0]
    if size >= m:
        return torch.arange(m)
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(features.shape[1], CORESET_DIM, generator=gen, device="cpu")
    x = features.float() @ proj.to(features.device)
    chosen = torch.empty(size, dtype=torch.long)
    start = int(torch.randint(m, (1,), generator=gen))
    dist = (x - x[start]).square().sum(1)
    chosen[0] = start
    for i in range(1, size):  # one vectorised distance update per selected centre
        nxt = int(dist.argmax())
        chosen[i] = nxt
        dist = torch.minimum(dist, (x - x[nxt]).square().sum(1))
    return chosen.sort().values


def fuse_fewshot(
    point: torch.Tensor,
    obj: torch.Tensor,
    few_point: torch.Tensor,
    *,
    weight: float,
    scales: tuple[float, float] = (1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot and few-shot fused (docs/calibration.md): ``(1 - w) Z / s_z + w F / s_f`` for the
    points and ``(1 - w) z / s_z + w max(F) / s_f`` for the object, ``s`` the references' scales."""
    zs, fs = scales
    fused = (1 - weight) * point / zs + weight * few_point / fs
    return fused, (1 - weight) * obj / zs + weight * few_point.max() / fs


@dataclass
class ReferenceBank:
    """Patch tokens of K normal references.

    Attributes:
        tokens: (L, M, D) L2-normalised tokens (float16 or float32).
        owner: (M,) int64, the reference each token came from (0..K-1).
        hashes: K content hashes of the references (:meth:`PointCloudSample.content_hash`).
        coreset: Whether the bank was reduced (then ``tokens`` is a subset of K x V x P).
        scales: (s_z, s_f), the standard deviations of the references' zero-shot and
            leave-one-out few-shot point scores, that put both maps on one scale before fusion
            (:func:`~align3d_ad.model.calibration.fit_scales`; (1, 1) until fitted).
    """

    tokens: torch.Tensor
    owner: torch.Tensor
    hashes: list[str]
    coreset: bool = False
    scales: tuple[float, float] = (1.0, 1.0)

    @property
    def num_references(self) -> int:
        return len(self.hashes)

    @classmethod
    def from_features(
        cls,
        per_reference: Sequence[torch.Tensor | np.ndarray],
        hashes: Sequence[str],
        *,
        max_tokens: int = MAX_BANK_TOKENS,
        seed: int = 0,
    ) -> ReferenceBank:
        """A bank of the (V, L, 1+P, D) tokens of each reference (coreset above ``max_tokens``)."""
        if not per_reference:
            raise ConfigError("references must hold at least one normal scan, got none")
        if len(per_reference) != len(hashes):
            raise ShapeError(f"hashes must have one entry per reference ({len(per_reference)})")
        parts = [patch_tokens(t) for t in per_reference]
        shapes = {(p.shape[0], p.shape[2]) for p in parts}
        if len(shapes) > 1:
            raise ShapeError(f"references must have the same layers and width, got {shapes}")
        tokens = torch.cat(parts, dim=1)
        owner = torch.cat([torch.full((p.shape[1],), k) for k, p in enumerate(parts)])
        coreset = tokens.shape[1] > max_tokens
        if coreset:
            keep = kcenter_coreset(tokens.mean(0), max_tokens, seed=seed)
            tokens, owner = tokens[:, keep], owner[keep]
        return cls(tokens.half(), owner.long(), list(hashes), coreset)

    def without(self, reference: int) -> ReferenceBank:
        """The bank of every reference but ``reference`` (leave-one-out)."""
        keep = self.owner != reference
        return ReferenceBank(
            self.tokens[:, keep], self.owner[keep], self.hashes, self.coreset, self.scales
        )

    @torch.no_grad()
    def score(self, tokens: torch.Tensor, *, exclude: Sequence[int | None] | None = None):
        """Few-shot patch scores (B, V, P) of (B, V, L, 1+P, D) tokens: mean over layers of
        ``1 - max cos`` over the bank (``exclude[b]``: a reference left out for sample b)."""
        b, v, n_layers, n_tok, d = tokens.shape
        if self.tokens.shape[0] != n_layers or self.tokens.shape[2] != d:
            raise ShapeError(
                f"tokens must have {self.tokens.shape[0]} layers of width {self.tokens.shape[2]} "
                f"(the references'), got shape {tuple(tokens.shape)}"
            )
        bank = self.tokens.to(tokens.device, torch.float32)
        owner = self.owner.to(tokens.device)
        out = tokens.new_empty(b, v * (n_tok - 1))
        for i in range(b):
            sel = bank
            if exclude is not None and exclude[i] is not None:
                sel = bank[:, owner != exclude[i]]
            if sel.shape[1] == 0:
                raise ConfigError("the reference bank is empty once the scored scan is left out")
            query = F.normalize(tokens[i, :, :, 1:].float().permute(1, 0, 2, 3), dim=-1)
            query = query.reshape(n_layers, -1, d)  # (L, V*P, D)
            best = torch.cat([
                torch.bmm(query[:, s : s + SCORE_CHUNK], sel.transpose(1, 2)).amax(-1)
                for s in range(0, query.shape[1], SCORE_CHUNK)
            ], dim=1)  # fmt: skip
            out[i] = (1.0 - best).clamp_min(0.0).mean(0)
        return out.reshape(b, v, n_tok - 1)

    def save(self, path: str | Path) -> Path:
        """Write the bank as fp16 safetensors (atomically)."""
        path = Path(path)
        meta = {"hashes": json.dumps(self.hashes), "coreset": json.dumps(self.coreset),
                "scales": json.dumps(list(self.scales))}  # fmt: skip
        tensors = {"tokens": self.tokens.half().contiguous(), "owner": self.owner.contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceBank:
        """Read a bank written by :meth:`save` (ConfigError naming the file when damaged)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            tensors = load_file(str(path))
            hashes = json.loads(meta["hashes"])
            coreset = bool(json.loads(meta.get("coreset", "false")))
            scales = tuple(float(v) for v in json.loads(meta.get("scales", "[1, 1]")))
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
            raise ConfigError(f"{path}: not a reference bank written by align3d-ad ({err})") from err
        tokens, owner = tensors.get("tokens"), tensors.get("owner")
        if tokens is None or owner is None or tokens.dim() != 3 or owner.shape != tokens.shape[1:2]:
            raise ConfigError(f"{path}: must hold tokens (L, M, D) and owner (M,)")
        if len(scales) != 2 or not all(v > 0 for v in scales):
            raise ConfigError(f"{path}: scales must be two positive numbers, got {scales}")
        return cls(tokens, owner.long(), list(hashes), coreset, scales)
