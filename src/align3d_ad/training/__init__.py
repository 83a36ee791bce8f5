"""Training: both stages on cached features, checkpoints every epoch, exact resume (METHOD.md §4-§5).

The checkpoint format itself lives in :mod:`align3d_ad.model.checkpoint`.
"""

from .data import TrainItem, build_train_items
from .stages import stage1_epoch, stage2_epoch
from .trainer import TrainResult, load_training_samples, train_model

__all__ = [
    "TrainItem",
    "TrainResult",
    "build_train_items",
    "load_training_samples",
    "stage1_epoch",
    "stage2_epoch",
    "train_model",
]
