"""Evaluation: metrics (O-AUROC, O-AP, P-AUROC, AUPRO), AUPRO regions, protocols and tables."""

from ._inputs import UndefinedMetricWarning
from .aupro import (
    AUPRO_METHODS,
    DEFAULT_MAX_FPR,
    DEFAULT_NUM_THRESHOLDS,
    ProCurve,
    aupro,
    pro_curve,
)
from .metrics import (
    ObjectMetrics,
    PointMetrics,
    object_ap,
    object_auroc,
    object_metrics,
    point_auroc,
    point_metrics,
)
from .regions import (
    DEFAULT_RADIUS_FACTOR,
    default_region_radius,
    global_region_ids,
    grid_regions,
    point_regions,
)

__all__ = [
    "AUPRO_METHODS",
    "DEFAULT_MAX_FPR",
    "DEFAULT_NUM_THRESHOLDS",
    "DEFAULT_RADIUS_FACTOR",
    "ObjectMetrics",
    "PointMetrics",
    "ProCurve",
    "UndefinedMetricWarning",
    "aupro",
    "default_region_radius",
    "global_region_ids",
    "grid_regions",
    "object_ap",
    "object_auroc",
    "object_metrics",
    "point_auroc",
    "point_metrics",
    "point_regions",
    "pro_curve",
]
