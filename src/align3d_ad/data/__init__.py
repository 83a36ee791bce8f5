"""Data layer: the sample type, file I/O, dataset readers and preprocessing (synthetic data: ``synth``).

``data`` knows nothing of torch models: it reads and writes point clouds and their labels.
"""

from .datasets import DatasetReader, SampleRef, get_dataset, list_datasets, register_dataset
from .formats import (
    read_image,
    read_pcd,
    read_ply,
    read_tiff_xyz,
    read_xyz_txt,
    write_pcd,
    write_ply,
    write_tiff_xyz,
)
from .inspect import DatasetReport, inspect_dataset
from .io import SUPPORTED_SUFFIXES, load_point_cloud
from .prepare import PreparedSample, prepare_sample
from .preprocess import (
    grid_resize_index,
    keep_largest_cluster,
    normalise_to_unit_sphere,
    remove_background_plane,
    resize_grid,
)
from .sample import PointCloudSample, valid_point_mask

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DatasetReader",
    "DatasetReport",
    "PointCloudSample",
    "PreparedSample",
    "SampleRef",
    "get_dataset",
    "grid_resize_index",
    "keep_largest_cluster",
    "normalise_to_unit_sphere",
    "prepare_sample",
    "remove_background_plane",
    "resize_grid",
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
