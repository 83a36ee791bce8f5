"""Typed configuration: YAML -> frozen dataclasses, one per section, overridable with ``--set``.

Every run folder stores the resolved configuration (``config.yaml``), so a run can be repeated
from its folder alone. Unknown keys raise :class:`~align3d_ad.errors.ConfigError` naming the
nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

#: Reference schedules (METHOD.md §4 and §5).
REFERENCE_STAGE1_EPOCHS = 250
REFERENCE_STAGE1_SCR_EPOCHS = 50
REFERENCE_STAGE2_EPOCHS = 15
REFERENCE_STAGE2_DPCA_EPOCHS = 5

METHOD_VARIANTS = ("align3d", "pointad", "clip-zero-shot")
BRANCHES = ("both", "aligned", "rendering")
#: Fewest valid points a cloud is scored from (:func:`~align3d_ad.data.prepare_sample` refuses
#: sparser clouds: a handful of splats gives every point the same score).
MIN_CLOUD_POINTS = 16
#: Largest rendered image side (``render.image_size``, ``align3d-ad render --size``).
MAX_IMAGE_SIZE = 4096
#: Largest seed: seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1

#: Allowed values of the choice keys, per section.
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "render": {"projection": ("orthographic", "perspective"), "style": ("ours", "reference")},
    "backbone": {"precision": ("auto", "fp32", "amp-bf16", "bf16", "fp16")},
    "method": {"variant": METHOD_VARIANTS, "branches": BRANCHES, "smoothing": ("knn", "grid", "none"),
               "postprocess": ("native", "reference")},
    "eval": {"aupro_method": ("exact", "official"), "on_missing_gt": ("error", "skip")},
}
#: Allowed ranges of the numeric keys, per section ("" = top level): "> a", ">= a" or an interval
#: "[a, b]", "(a, b]", "[a, b)". None values pass (they mean "the default"); tuples are checked
#: entry by entry.
RANGES: dict[str, dict[str, str]] = {
    "data": {
        "plane_fit_threshold": "> 0", "plane_cut_distance": ">= 0", "cluster_radius": "> 0",
        "max_points": f">= {MIN_CLOUD_POINTS}", "limit_per_split": ">= 1",
    },
    "render": {"image_size": f"[2, {MAX_IMAGE_SIZE}]", "splat_radius": "[0, 64]"},
    "backbone": {"vv_start": ">= 1", "layers": ">= 1", "batch_size": ">= 1"},
    "method": {
        "scr_lambda": ">= 0", "dpca_gamma": ">= 0", "temperature": "> 0", "alpha": "[0, 1]",
        "beta": "[0, 1]", "n_ctx": ">= 1", "deep_tokens": ">= 0", "deep_depth": ">= 0",
        "smoothing_sigma": ">= 0", "grid_sigma": ">= 0", "fewshot_weight": "[0, 1]",
    },
    "train": {
        "stage1_epochs": ">= 0", "stage1_scr_epochs": ">= 0", "stage1_batch_size": ">= 1",
        "stage2_epochs": ">= 0", "stage2_dpca_epochs": ">= 0", "stage2_batch_size": ">= 1",
        "lr": "> 0", "betas": "[0, 1)",
    },
    "eval": {"grid_size": ">= 2", "max_fpr": "(0, 1]", "batch_size": ">= 1", "workers": ">= 0"},
    "": {"seed": f"[0, {MAX_SEED}]"},
}  # fmt: skip


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from and how clouds are prepared before rendering."""

    dataset: str = "mvtec3d"  #: reader name: mvtec3d | eyecandies | real3d | folder
    root: str | None = None  #: dataset root folder (the CLI's --root)
    train_categories: tuple[str, ...] = ()  #: auxiliary categories trained on (their labelled split)
    train_split: str | None = None  #: None = the reader's labelled split (test / test_public)
    remove_background: bool = True  #: fit and cut the background plane of organised top-view scans
    plane_fit_threshold: float = 0.004  #: RANSAC inlier distance (data units; BTF: 4 mm)
    plane_cut_distance: float = 0.005  #: points nearer the plane are background (BTF: 5 mm)
    keep_largest_cluster: bool = True  #: drop everything but the largest connected cluster
    cluster_radius: float | None = None  #: 3D DBSCAN radius (data units, BTF: 0.006); None = grid components
    max_points: int | None = None  #: uniformly subsample bigger clouds for rendering (None = all)
    limit_per_split: int | None = None  #: read at most this many samples per category/split
    reader_options: dict = field(default_factory=dict)  #: extra options of the dataset reader

    def __post_init__(self) -> None:
        check_section(self, "data")


@dataclass(frozen=True)
class RenderConfig:
    """Multi-view rendering (METHOD.md §2)."""

    views: str | tuple = "mvtec3d"  #: preset name or a list of [axis, degrees] pairs
    image_size: int | None = None  #: None = the backbone's input size
    splat_radius: float | None = None  #: pixels; None = chosen from the point spacing
    projection: str = "orthographic"  #: orthographic | perspective
    #: ours (the settings above) | reference (REFERENCE.md §2: Open3D's camera fit, square points,
    #: Phong, 8-bit bicubic downsize; render/reference.py); see docs/reproduce.md
    style: str = "ours"

    def __post_init__(self) -> None:
        check_section(self, "render")


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen CLIP model (METHOD.md §3)."""

    model_name: str = "ViT-L-14-336-quickgelu"
    pretrained: str | None = "openai"  #: open_clip tag; ignored when weights is set
    weights: str | None = None  #: local weights file (state dict, safetensors, OpenAI TorchScript)
    vv_start: int | None = None  #: first V-V block (1-based); None = 6/24 of the depth
    layers: tuple[int, ...] = ()  #: V-V layers for local features; () = the last
    #: auto (amp-bf16 on CUDA, fp32 elsewhere) | fp32 | amp-bf16 (bf16 autocast of the image
    #: encoder, fp32 weights) | bf16 | fp16 (weights cast)
    precision: str = "auto"
    batch_size: int = 18  #: views per backbone forward
    cache_dir: str | None = None  #: None = <user cache>/align3d-ad/features
    use_cache: bool = True

    def __post_init__(self) -> None:
        check_section(self, "backbone")


@dataclass(frozen=True)
class MethodConfig:
    """The detector and its ablation switches (METHOD.md §4–§6)."""

    variant: str = "align3d"  #: align3d | pointad | clip-zero-shot
    branches: str = "both"  #: both | aligned | rendering
    use_scr: bool = True
    use_dpca: bool = True
    scr_lambda: float = 1.0
    dpca_gamma: float = 0.1
    temperature: float = 0.07
    alpha: float = 0.5  #: object-score fusion weight of the aligned branch
    beta: float = 0.5  #: point-score fusion weight of the aligned branch
    n_ctx: int = 12
    deep_tokens: int = 4
    deep_depth: int = 9
    smoothing: str = "knn"  #: knn (3D Gaussian over neighbours) | grid (reference) | none
    smoothing_sigma: float = 4.0  #: knn: Gaussian sigma in point spacings (reference: 4 grid px)
    grid_sigma: float = 4.0  #: grid: Gaussian sigma in grid pixels
    #: native (ours: every point at native resolution, bilinear, 3D smoothing) | reference
    #: (REFERENCE.md §1/§3: eval.grid_size² resampling, nearest reading, grid_sigma blur of the
    #: whole grid; replaces `smoothing`); see docs/reproduce.md
    postprocess: str = "native"
    fewshot_weight: float = 0.5  #: weight w of the few-shot map (docs/calibration.md); used with references only

    def __post_init__(self) -> None:
        check_section(self, "method")


@dataclass(frozen=True)
class TrainConfig:
    """Schedules of both stages (reference values in the module constants)."""

    stage1_epochs: int = REFERENCE_STAGE1_EPOCHS
    stage1_scr_epochs: int = REFERENCE_STAGE1_SCR_EPOCHS  #: SCR on for the last N epochs (all if N >= epochs)
    stage1_batch_size: int = 4
    stage2_epochs: int = REFERENCE_STAGE2_EPOCHS
    stage2_dpca_epochs: int = REFERENCE_STAGE2_DPCA_EPOCHS  #: DpCA on for the last N epochs (all if N >= epochs)
    stage2_batch_size: int = 4
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        check_section(self, "train")


@dataclass(frozen=True)
class EvalConfig:
    """How test results are scored (METHOD.md §7)."""

    dataset: str | None = None  #: None = data.dataset
    root: str | None = None  #: None = data.root
    categories: tuple[str, ...] = ()  #: () = every category but the training ones
    split: str | None = None  #: None = the reader's labelled split
    reader_options: dict = field(default_factory=dict)  #: e.g. {gt_mismatch: error} for real3d
    views: str | tuple | None = None  #: test-time views; None = the test dataset's preset (cross-dataset) or render.views
    on_missing_gt: str = "error"  #: error | skip: a test sample without ground truth stops the test, or is skipped and counted
    grid_size: int = 336  #: side of the resized organised grid of the `grid` point metrics
    aupro_method: str = "exact"  #: exact | official
    max_fpr: float = 0.3
    batch_size: int = 4  #: samples rendered and scored together (B x V views per backbone pass)
    workers: int | None = None  #: processes reading and preparing samples; None = cores beyond 2, <= 8

    def __post_init__(self) -> None:
        check_section(self, "eval")


@dataclass(frozen=True)
class ProtocolConfig:
    """A published row: which auxiliaries train, which datasets test (METHOD.md §7–§8)."""

    name: str = "custom"
    auxiliaries: tuple[str, ...] = ()
    test_datasets: tuple[str, ...] = ()  #: () = one-vs-rest on data.dataset
    published: str | None = None  #: key of the published table row to print beside ours


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False  #: deterministic algorithms (--deterministic; device.set_deterministic)

    def __post_init__(self) -> None:
        check_section(self, "")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with dotted-key overrides applied, e.g. ``replace(**{"train.lr": 1e-4})``."""
        data = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return config_from_dict(data)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, raising ConfigError on a mismatch."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key} must not be null")
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if args and len(args) != len(value):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args or [Any] * len(value)))
    if annotation is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, annotation, f"{prefix}{key}")
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build a :class:`Config` from a nested mapping; missing keys keep their defaults."""
    config = _build(Config, data or {}, "")
    validate(config)
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a mapping of sections, got {type(data).__name__}")
    _merge_overrides(data, overrides)
    return config_from_dict(data)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Return ``config`` with ``section.key=value`` overrides (values parsed as YAML) applied."""
    data = config.to_dict()
    _merge_overrides(data, overrides)
    return config_from_dict(data)


def _merge_overrides(data: dict[str, Any], overrides: Sequence[str]) -> None:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set must be key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from err
        _set_dotted(data, key.strip(), value)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"unknown config key '{key}': {part} is not a section")
        node = child
    node[parts[-1]] = value


def validate(config: Config) -> None:
    """Check every section again (each section checks its values when it is built)."""
    for prefix in ("data", "render", "backbone", "method", "train", "eval"):
        check_section(getattr(config, prefix), prefix)
    check_section(config, "")


def check_section(section: Any, prefix: str) -> None:
    """Raise ConfigError naming the full key (``<prefix>.<name>``) of the first bad value."""
    for name, choices in CHOICES.get(prefix, {}).items():
        value = getattr(section, name)
        if value not in choices:
            raise ConfigError(f"{prefix}.{name} must be one of {', '.join(choices)}, got {value!r}")
    for name, spec in RANGES.get(prefix, {}).items():
        _check_number(f"{prefix}.{name}" if prefix else name, getattr(section, name), spec)


def _within(value: float, spec: str) -> bool:
    """Whether ``value`` satisfies a :data:`RANGES` spec (NaN never does)."""
    if spec[0] in "[(":
        low, high = (float(x) for x in spec[1:-1].split(","))
        above = value > low if spec[0] == "(" else value >= low
        return above and (value < high if spec[-1] == ")" else value <= high)
    op, bound = spec.split()
    return value > float(bound) if op == ">" else value >= float(bound)


def _check_number(key: str, value: Any, spec: str) -> None:
    if value is None:
        return
    many = isinstance(value, tuple)
    subject, got = (f"{key} entries", list(value)) if many else (key, value)
    for item in value if many else (value,):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise ConfigError(f"{subject} must be finite numbers, got {got!r}" if many
                              else f"{key} must be a finite number, got {got!r}")  # fmt: skip
        if not _within(item, spec):
            must = f"must lie in {spec}" if spec[0] in "[(" else f"must be {spec}"
            raise ConfigError(f"{subject} {must}, got {got!r}")


__all__ = [
    "BackboneConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "ProtocolConfig",
    "RenderConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
]
