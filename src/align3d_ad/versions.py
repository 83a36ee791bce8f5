"""Versions of Python and of the libraries whose behaviour changes results (recorded in every run)."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """Versions of Python and the libraries whose behaviour changes results."""
    import numpy
    import open_clip
    import scipy
    import sklearn
    import torch

    from ._version import __version__

    return {
        "align3d_ad": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit_learn": sklearn.__version__,
        "cuda": str(torch.version.cuda) if torch.cuda.is_available() else "not available",
    }
