"""Helpers shared by the pipeline tests (a module of its own: ``conftest`` names clash)."""

from __future__ import annotations

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
