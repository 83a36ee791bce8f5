"""align3d-ad: zero-shot 3D anomaly detection with the Align3D-AD method.

Point clouds are rendered from several views, encoded by a frozen CLIP model, aligned into CLIP's
RGB feature space and scored against learned normal/anomalous prompts; the per-view maps are
projected back onto the points. See the README for the command line and the Python API.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    Align3DError,
    CheckpointMismatchError,
    ConfigError,
    DatasetFormatError,
    ShapeError,
    WeightsNotFoundError,
)

__all__ = [
    "Align3DError",
    "CheckpointMismatchError",
    "ConfigError",
    "DatasetFormatError",
    "ShapeError",
    "WeightsNotFoundError",
    "__version__",
]
