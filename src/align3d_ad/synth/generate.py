"""``generate_dataset``: write a synthetic benchmark in the real on-disk format of one dataset."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .eyecandies import write_eyecandies_category
from .manifest import SynthManifest, prepare_output
from .mvtec import write_mvtec_category
from .real3d import write_real3d_category
from .shapes import CATEGORIES, list_synth_categories
from .streams import FORMAT_CODES, Streams

logger = logging.getLogger(__name__)

SYNTH_FORMATS = tuple(FORMAT_CODES)


def category_folder(category: str, format: str) -> str:
    """Folder name of a synthetic category in ``format`` (Eyecandies uses CamelCase names)."""
    return CATEGORIES[category].eyecandies_name if format == "eyecandies" else category


def _check_options(format: str, categories: Sequence[str] | None, seed: int) -> list[str]:
    if format not in FORMAT_CODES:
        raise ConfigError(f"format must be one of {list(SYNTH_FORMATS)}, got {format!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if categories is None:
        return list_synth_categories()
    if isinstance(categories, str):
        categories = [categories]
    known = list_synth_categories()
    unknown = [c for c in categories if c not in known]
    if unknown or not categories:
        raise ConfigError(f"categories must be among {known}, got {list(categories)!r}")
    return [c for c in known if c in set(categories)]


def generate_dataset(
    out: str | Path,
    *,
    format: str = "mvtec3d",
    categories: Sequence[str] | None = None,
    seed: int = 0,
    small: bool = False,
    train_good: int | None = None,
) -> SynthManifest:
    """Write a synthetic dataset in the exact layout and file formats of a benchmark.

    Args:
        out: Output folder: missing, empty, or a previous synthetic output (which is replaced).
        format: ``"mvtec3d"``, ``"eyecandies"`` or ``"real3d"``.
        categories: Synthetic categories to write (default all, see ``list_synth_categories``).
        seed: Non-negative seed; the same seed writes byte-identical files.
        small: A few samples per category on small grids (seconds), for tests and the demo.
        train_good: Normal training scans per category (MVTec 3D-AD ``train/good``, Eyecandies
            ``train``, Real3D-AD ``train`` templates) instead of the size's default (small: 3 / 3
            / 2, full: 16 / 16 / 4), e.g. 8 for ``test --shots 8``. Every scan is seeded by its
            index, so the other scans are the same bytes whatever the count.

    Returns:
        The manifest, also written to ``<out>/synth_manifest.json``.

    Raises:
        ConfigError: Unknown format/category, bad seed, or ``out`` holding other data.
    """
    names = _check_options(format, categories, seed)
    if train_good is not None and (
        isinstance(train_good, bool) or not isinstance(train_good, int) or train_good < 1
    ):
        raise ConfigError(f"train_good must be a positive integer, got {train_good!r}")
    out = Path(out)
    prepare_output(out)
    folders = {name: category_folder(name, format) for name in names}
    manifest = SynthManifest(
        format, seed, bool(small), {f: {} for f in folders.values()}, complete=False
    )
    manifest.write(out)  # marks the folder as synth output even if the run is interrupted
    all_names = list_synth_categories()
    for name, folder in folders.items():
        streams = Streams(seed, FORMAT_CODES[format], all_names.index(name))
        logger.info("synth %s: writing %s", format, folder)
        if format == "mvtec3d":
            stats = write_mvtec_category(out, name, streams, small=small, train=train_good)
        elif format == "eyecandies":
            stats = write_eyecandies_category(out, name, folder, streams, small=small, train=train_good)
        else:
            stats = write_real3d_category(out, name, streams, small=small, train=train_good)
        manifest.categories[folder] = stats
    manifest.complete = True
    manifest.write(out)
    return manifest
