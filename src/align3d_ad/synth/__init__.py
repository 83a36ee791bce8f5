"""Synthetic benchmark data written in the real on-disk formats (MVTec 3D-AD, Eyecandies, Real3D-AD).

The project's embedded default dataset: procedural objects (``list_synth_categories``) with random
pose, scale and texture, and defects with exact point-level ground truth.

Example:
    >>> from align3d_ad.synth import generate_dataset
    >>> manifest = generate_dataset("synth_mvtec", format="mvtec3d", small=True)  # doctest: +SKIP
"""

from .generate import SYNTH_FORMATS, category_folder, generate_dataset
from .manifest import MANIFEST_NAME, SynthManifest, SynthSplit
from .shapes import list_synth_categories

__all__ = [
    "MANIFEST_NAME",
    "SYNTH_FORMATS",
    "SynthManifest",
    "SynthSplit",
    "category_folder",
    "generate_dataset",
    "list_synth_categories",
]
