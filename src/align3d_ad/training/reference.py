"""Training samples in reference style: the points the reference trains on (REFERENCE.md §1).

The reference's render scripts (PointAD ``multi_view/multiview_*.py``) process the test split of
every class, from the resampled cloud of §1 (organised grids nearest-resized to 336², Real3D-AD
clouds to exactly 112,896 points); training on an auxiliary class reads those same renders and
their correspondences. So with ``method.postprocess:
reference``, which resamples at test time, training resamples the same way (the same
``eval.grid_size`` and ``seed``; Eyecandies samples after the reference's background box,
:func:`~align3d_ad.data.reference_background.reference_prepared`), and the losses see the points
the test scores.
"""

from __future__ import annotations

import dataclasses

from ..config import Config
from ..data.prepare import PreparedSample
from ..data.reference import reference_resample
from ..data.reference_background import reference_prepared


def reference_training_samples(
    samples: list[PreparedSample], config: Config
) -> list[PreparedSample]:
    """``samples`` with their points resampled as at test time (``method.postprocess:
    reference``); unchanged otherwise. Eyecandies samples also get the reference's background
    (``foreground`` and ``rendered`` with it)."""
    if config.method.postprocess != "reference":
        return samples
    size, seed = config.eval.grid_size, config.seed
    return [
        dataclasses.replace(q, sample=reference_resample(q.sample, size, seed=seed)[0])
        for q in (reference_prepared(p, size) for p in samples)
    ]


__all__ = ["reference_training_samples"]
