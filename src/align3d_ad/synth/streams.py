"""Independent, reproducible random streams per format, category, split, sample and purpose.

``np.random.default_rng([seed, format, category, split, index, purpose])`` gives every sample its own
stream, so a category or a sample comes out the same whichever others are generated with it, and
the clean and the defective version of a sample share the object stream (only ``DEFECT`` differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMAT_CODES = {"mvtec3d": 0, "eyecandies": 1, "real3d": 2}
OBJECT = 0  # instance, pose, texture, dropouts
DEFECT = 1  # defect kinds, placement and size
LAYOUT = 2  # file order, ids, encodings


@dataclass(frozen=True)
class Streams:
    """The random streams of one category of one generated dataset."""

    seed: int
    format_code: int
    category_code: int

    def rng(self, split_code: int, index: int, purpose: int) -> np.random.Generator:
        """The generator of sample ``index`` of split ``split_code`` for ``purpose``."""
        key = [self.seed, self.format_code, self.category_code, split_code, index, purpose]
        return np.random.default_rng(key)
