"""Dataset readers: MVTec 3D-AD, Eyecandies, Real3D-AD and plain folders (DATASETS.md).

Use :func:`get_dataset` (``get_dataset("mvtec3d", root)``) or :func:`list_datasets`; importing this
package registers every reader.
"""

from .base import (
    DatasetReader,
    SampleRef,
    get_dataset,
    list_datasets,
    register_dataset,
)
from .eyecandies import EyecandiesReader, decode_eyecandies_depth, eyecandies_depth_to_points
from .folder import FolderReader
from .mvtec3d import MVTec3DReader
from .real3d import Real3DReader, parse_real3d_name

__all__ = [
    "DatasetReader",
    "EyecandiesReader",
    "FolderReader",
    "MVTec3DReader",
    "Real3DReader",
    "SampleRef",
    "decode_eyecandies_depth",
    "eyecandies_depth_to_points",
    "get_dataset",
    "list_datasets",
    "parse_real3d_name",
    "register_dataset",
]
