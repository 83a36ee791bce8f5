"""Training: both stages on cached features, checkpoints every epoch, exact resume (METHOD.md §4-§5)."""

from .checkpoint import backbone_spec, load_detector, make_encoder, read_checkpoint, view_preset
from .data import TrainItem, build_train_items
from .stages import stage1_epoch, stage2_epoch
from .trainer import TrainResult, load_training_samples, train_model

__all__ = [
    "TrainItem",
    "TrainResult",
    "backbone_spec",
    "build_train_items",
    "load_detector",
    "load_training_samples",
    "make_encoder",
    "read_checkpoint",
    "stage1_epoch",
    "stage2_epoch",
    "train_model",
    "view_preset",
]
