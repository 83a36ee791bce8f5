"""Point normals as Open3D estimates them for the reference renders (REFERENCE.md §1).

PCA over the hybrid neighbourhood (radius, at most k neighbours), unoriented, with the sign that
Open3D's robust symmetric 3 x 3 eigen solver (Eberly, Geometric Tools) gives: the diffuse term of
the reference shading is lit from both sides and the specular one ignores the sign, so only the
lights' distances could show the sign, and Open3D's shader turns every normal to face the eye
first, so the sign never shows (kept exact all the same). Vectorised over points (numpy).

On CUDA, :func:`estimate_normals_torch` does the same on the device (chunked exact k nearest
neighbours, ``torch.linalg.eigh``): the same unoriented normals up to sign and to the order of
equally distant neighbours, without a round trip through a CPU KD-tree.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

#: Query rows per distance block of :func:`estimate_normals_torch`.
NORMAL_CHUNK = 2048


def estimate_normals(points: np.ndarray, radius: float, k: int) -> np.ndarray:
    """PCA normals over at most ``k`` neighbours within ``radius`` (Open3D's hybrid search).

    The sign is the one Open3D's unoriented estimate gives: its covariance from first and second
    moments and the robust symmetric 3 x 3 eigen solver (Eberly, Geometric Tools), vectorised.
    """
    pts = np.asarray(points, dtype=np.float64)
    k = min(k, len(pts))
    dist, idx = cKDTree(pts).query(pts, k=k, distance_upper_bound=radius, workers=-1)
    valid = np.isfinite(dist)
    idx = np.where(valid, idx, np.arange(len(pts))[:, None])
    nb = pts[idx]
    weighted = nb * valid[..., None]
    count = valid.sum(axis=1)[:, None].astype(np.float64)
    mean = weighted.sum(axis=1) / count
    second = np.matmul(weighted.transpose(0, 2, 1), nb) / count[..., None]
    return _robust_smallest_eigenvector(second - mean[:, :, None] * mean[:, None, :]).astype(np.float32)


def _eigvec_from_rows(a: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Eigenvector of symmetric (n, 3, 3) ``a`` for ``value``: the longest cross product of rows."""
    rows = a - value[:, None, None] * np.eye(3)
    crosses = np.stack([np.cross(rows[:, 0], rows[:, 1]), np.cross(rows[:, 0], rows[:, 2]),
                        np.cross(rows[:, 1], rows[:, 2])], axis=1)  # fmt: skip
    sq = (crosses**2).sum(-1)
    best = np.argmax(sq, axis=1)  # first maximum, as the solver's strict comparisons
    pick = crosses[np.arange(len(a)), best]
    length = np.sqrt(sq[np.arange(len(a)), best])[:, None]
    return pick / np.where(length > 0, length, 1.0)  # zero rows (degenerate): fixed up by caller


def _eigvec_in_plane(a: np.ndarray, first: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Eigenvector for ``value`` orthogonal to the known eigenvector ``first`` (2D subproblem)."""
    x, y, z = first[:, 0], first[:, 1], first[:, 2]
    use_x = np.abs(x) > np.abs(y)
    with np.errstate(divide="ignore", invalid="ignore"):  # zero rows (degenerate): caller fixes
        inv_xz = 1 / np.sqrt(np.where(use_x, x * x + z * z, 1.0))
        inv_yz = 1 / np.sqrt(np.where(use_x, 1.0, y * y + z * z))
        zero = np.zeros_like(x)
        u = np.where(use_x[:, None], np.stack([-z * inv_xz, zero, x * inv_xz], 1),
                     np.stack([zero, z * inv_yz, -y * inv_yz], 1))  # fmt: skip
    v = np.cross(first, u)
    au, av = np.einsum("nij,nj->ni", a, u), np.einsum("nij,nj->ni", a, v)
    m00 = (u * au).sum(1) - value
    m01 = (u * av).sum(1)
    m11 = (v * av).sum(1) - value
    out = u.copy()
    big00 = np.abs(m00) >= np.abs(m11)
    p, q = np.where(big00, m00, m11), m01  # the larger diagonal entry and the off-diagonal
    nonzero = np.maximum(np.abs(p), np.abs(q)) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        by_p = np.abs(p) >= np.abs(q)
        r = np.where(by_p, q / p, p / q)
        s = 1 / np.sqrt(1 + r * r)
        cp, cq = np.where(by_p, s, r * s), np.where(by_p, r * s, s)  # (p, q) normalised
    # m00 row: m01 U - m00 V; m11 row: m11 U - m01 V (the solver's two cases)
    vec = np.where(big00[:, None], cq[:, None] * u - cp[:, None] * v, cp[:, None] * u - cq[:, None] * v)
    return np.where(nonzero[:, None], vec, out)


def _robust_smallest_eigenvector(cov: np.ndarray) -> np.ndarray:
    """Eigenvector of the smallest eigenvalue of symmetric (n, 3, 3) matrices, Open3D's sign."""
    n = len(cov)
    scale = cov.reshape(n, 9).max(axis=1)
    out = np.tile([0.0, 0.0, 1.0], (n, 1))
    ok = scale != 0
    a = cov / np.where(ok, scale, 1.0)[:, None, None]
    off = a[:, 0, 1] ** 2 + a[:, 0, 2] ** 2 + a[:, 1, 2] ** 2
    d = np.stack([a[:, 0, 0], a[:, 1, 1], a[:, 2, 2]], 1)
    axis = np.where((d[:, 0] < d[:, 1]) & (d[:, 0] < d[:, 2]), 0,
                    np.where((d[:, 1] < d[:, 0]) & (d[:, 1] < d[:, 2]), 1, 2))  # fmt: skip
    diagonal = np.eye(3)[axis]
    q = d.sum(1) / 3
    b = d - q[:, None]
    p = np.sqrt(((b**2).sum(1) + off * 2) / 6)
    c00 = b[:, 1] * b[:, 2] - a[:, 1, 2] ** 2
    c01 = a[:, 0, 1] * b[:, 2] - a[:, 1, 2] * a[:, 0, 2]
    c02 = a[:, 0, 1] * a[:, 1, 2] - b[:, 1] * a[:, 0, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.clip((b[:, 0] * c00 - a[:, 0, 1] * c01 + a[:, 0, 2] * c02) / p**3 * 0.5, -1, 1)
    angle = np.arccos(np.nan_to_num(half)) / 3
    beta2, beta0 = np.cos(angle) * 2, np.cos(angle + 2.09439510239319549) * 2
    beta1 = -(beta0 + beta2)
    e0, e1, e2 = q + p * beta0, q + p * beta1, q + p * beta2
    general = ok & (off > 0)
    idx = np.flatnonzero(general)
    if idx.size:
        ag = a[idx]
        pos = half[idx] >= 0
        ev2 = _eigvec_from_rows(ag, e2[idx])
        ev1 = _eigvec_in_plane(ag, ev2, e1[idx])
        ev0 = _eigvec_from_rows(ag, e0[idx])
        out[idx] = np.where(pos[:, None], np.cross(ev1, ev2), ev0)
    out[ok & ~general] = diagonal[ok & ~general]
    bad = np.abs(np.linalg.norm(out, axis=1) - 1) > 1e-6  # repeated eigenvalues: any eigenvector
    if bad.any():
        out[bad] = np.linalg.eigh(cov[bad])[1][..., 0]
    return out


def estimate_normals_torch(points: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """:func:`estimate_normals` on ``points``' device: float64 (N, 3), sign unspecified."""
    pts = points.to(torch.float64)
    n = len(pts)
    k = min(k, n)
    rows = []
    for start in range(0, n, NORMAL_CHUNK):  # blocks of query rows, each against every point
        dist, idx = torch.cdist(pts[start : start + NORMAL_CHUNK], pts).topk(k, largest=False)
        rows.append(torch.where(dist < radius, idx, -1))
    idx = torch.cat(rows)
    valid = idx >= 0
    nb = pts[idx.clamp_min(0)] * valid[..., None]
    count = valid.sum(dim=1, keepdim=True).to(pts.dtype)
    mean = nb.sum(dim=1) / count
    cov = nb.transpose(1, 2) @ nb / count[..., None] - mean[:, :, None] * mean[:, None, :]
    normals = torch.linalg.eigh(cov)[1][..., 0]
    flat = cov.abs().amax(dim=(1, 2)) == 0  # a lone point: Open3D's default (0, 0, 1)
    return torch.where(flat[:, None], pts.new_tensor([0.0, 0.0, 1.0]), normals)


__all__ = ["estimate_normals", "estimate_normals_torch"]
