"""Published numbers to compare with (METHOD.md §8): O-AUROC / O-AP / P-AUROC / AUPRO, x100.

Source: the Align3D-AD paper (arXiv 2605.05850, May 2026), which also lists PointAD (NeurIPS 2024)
in the same protocol. Point metrics there are PointAD's arithmetic (this project's ``reference``
variant, REFERENCE.md §4); NaN where the paper reports no value.
"""

from __future__ import annotations

import math

METRICS = ("o_auroc", "o_ap", "p_auroc", "aupro")

#: row -> method -> (O-AUROC, O-AP, P-AUROC, AUPRO)
PUBLISHED: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "mvtec3d_one_vs_rest": {
        "PointAD": (82.0, 94.2, 95.5, 84.4),
        "Align3D-AD (paper)": (83.0, 94.3, 95.9, 86.5),
    },
    "eyecandies_one_vs_rest": {
        "PointAD": (69.1, 73.8, 92.1, 71.3),
        "Align3D-AD (paper)": (71.3, 76.6, 92.6, 74.2),
    },
    "cross_eyecandies": {
        "PointAD": (69.5, 74.3, 91.8, 71.4),
        "Align3D-AD (paper)": (70.7, 75.3, 92.0, 72.6),
    },
    "cross_real3d": {
        "PointAD": (75.9, 77.9, 71.6, math.nan),
        "Align3D-AD (paper)": (76.1, 79.3, 76.7, math.nan),
    },
}


def published_row(name: str) -> dict[str, dict[str, float]]:
    """The published numbers of one setting as ``{method: {metric: value}}`` (empty if unknown)."""
    return {method: dict(zip(METRICS, values)) for method, values in PUBLISHED.get(name, {}).items()}
