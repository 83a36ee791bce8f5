"""Data layer: the sample type, file I/O, dataset readers, preprocessing and synthetic data.

``data`` knows nothing of torch models: it reads and writes point clouds and their labels.
"""

from .datasets import DatasetReader, SampleRef, get_dataset, list_datasets, register_dataset
from .inspect import DatasetReport, inspect_dataset
from .io import (
    SUPPORTED_SUFFIXES,
    load_point_cloud,
    read_image,
    read_pcd,
    read_ply,
    read_tiff_xyz,
    read_xyz_txt,
    write_pcd,
    write_ply,
    write_tiff_xyz,
)
from .sample import PointCloudSample, valid_point_mask

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DatasetReader",
    "DatasetReport",
    "PointCloudSample",
    "SampleRef",
    "get_dataset",
    "inspect_dataset",
    "list_datasets",
    "load_point_cloud",
    "read_image",
    "read_pcd",
    "read_ply",
    "read_tiff_xyz",
    "read_xyz_txt",
    "register_dataset",
    "valid_point_mask",
    "write_pcd",
    "write_ply",
    "write_tiff_xyz",
]
