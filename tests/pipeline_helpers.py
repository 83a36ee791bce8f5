"""Helpers shared by the tests (a module of its own: ``conftest`` names clash)."""

from __future__ import annotations

import numpy as np

FAST_TRAIN = [
    "train.stage1_epochs=2",
    "train.stage1_scr_epochs=1",
    "train.stage2_epochs=2",
    "train.stage2_dpca_epochs=1",
]


def demo_config(root, cache, *overrides):
    """configs/demo.yaml on ``root`` with a fast schedule and the given overrides."""
    from align3d_ad.app.commands.demo import DEMO_CONFIG
    from align3d_ad.config import load_config

    return load_config(
        DEMO_CONFIG,
        [f"data.root={root}", f"backbone.cache_dir={cache}", "device=cpu",
         "data.train_categories=[bagel]", *FAST_TRAIN, *overrides],
    )


def stops_at_call(real, n: int = 2):
    """``real`` wrapped to raise KeyboardInterrupt at its ``n``-th call (an interrupted epoch)."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapped


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform points on the unit sphere (the Fibonacci lattice), in lattice order."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
