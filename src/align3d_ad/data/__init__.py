"""Data layer: the sample type, file I/O, dataset readers, preprocessing and synthetic data."""

from .sample import PointCloudSample, valid_point_mask

__all__ = ["PointCloudSample", "valid_point_mask"]
