"""align3d-ad: zero-shot 3D anomaly detection with the Align3D-AD method.

Point clouds are rendered from several views, encoded by a frozen CLIP model, aligned into CLIP's
RGB feature space and scored against learned normal/anomalous prompts; the per-view maps are
projected back onto the points.

The notebook API is exported here and imported on first use, so ``import align3d_ad`` stays fast::

    import align3d_ad as a3d

    detector = a3d.Detector.from_checkpoint("runs/bagel")
    prediction = detector.predict(a3d.load_point_cloud("scan.tiff"))
    prediction.point_scores, prediction.object_score
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    Align3DError,
    CheckpointMismatchError,
    ConfigError,
    DatasetFormatError,
    ShapeError,
    WeightsNotFoundError,
)

#: Lazily imported names: name -> (module, attribute).
_LAZY = {
    "Config": ("config", "Config"),
    "load_config": ("config", "load_config"),
    "PointCloudSample": ("data.sample", "PointCloudSample"),
    "load_point_cloud": ("data.io", "load_point_cloud"),
    "get_dataset": ("data.datasets", "get_dataset"),
    "generate_dataset": ("synth", "generate_dataset"),
    "Detector": ("model.detector", "Detector"),
    "Prediction": ("model.detector", "Prediction"),
    "train": ("training.trainer", "train_model"),
    "evaluate_dataset": ("evaluate.runner", "evaluate_dataset"),
}

__all__ = [
    "Align3DError",
    "CheckpointMismatchError",
    "Config",
    "ConfigError",
    "DatasetFormatError",
    "Detector",
    "Prediction",
    "PointCloudSample",
    "ShapeError",
    "WeightsNotFoundError",
    "__version__",
    "evaluate_dataset",
    "generate_dataset",
    "get_dataset",
    "load_config",
    "load_point_cloud",
    "train",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .config import Config, load_config
    from .data.datasets import get_dataset
    from .data.io import load_point_cloud
    from .data.sample import PointCloudSample
    from .evaluate.runner import evaluate_dataset
    from .model.detector import Detector, Prediction
    from .synth import generate_dataset
    from .training.trainer import train_model as train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
