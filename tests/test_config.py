"""Configuration: YAML files, overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from align3d_ad.config import (
    RANGES,
    BackboneConfig,
    Config,
    DataConfig,
    EvalConfig,
    MethodConfig,
    RenderConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from align3d_ad.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path):
    config = load_config(path)
    assert config_from_dict(config.to_dict()) == config
    if path.name != "demo.yaml":
        assert config.protocol.published == path.stem
        assert config.train.stage1_epochs == 250 and config.train.stage2_epochs == 15


def test_published_rows_are_all_shipped():
    assert {p.stem for p in CONFIGS} >= {
        "mvtec3d_one_vs_rest", "eyecandies_one_vs_rest", "cross_eyecandies", "cross_real3d", "demo",
    }  # fmt: skip


def test_overrides_are_typed():
    config = load_config(None, ["train.lr=0.01", "render.views=[[x, 10], [y, -20]]",
                                "backbone.layers=[6, 12]", "data.max_points=null"])  # fmt: skip
    assert config.train.lr == 0.01 and config.backbone.layers == (6, 12)
    assert config.render.views == (("x", 10), ("y", -20)) and config.data.max_points is None
    assert apply_overrides(Config(), ["seed=3"]).seed == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "did you mean 'train.lr'"),
        ("trian.lr=1", "did you mean 'train'"),
        ("method.variant=foo", "method.variant must be one of"),
        ("train.stage1_epochs=ten", "train.stage1_epochs must be an integer"),
        ("method.alpha=2", "method.alpha must lie in"),
        ("method.use_scr=maybe", "method.use_scr must be true or false"),
        ("noequals", "must be key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)


# ----------------------------------------------------------------------- ranges of numeric keys
SECTIONS = {"data": DataConfig, "render": RenderConfig, "backbone": BackboneConfig,
            "method": MethodConfig, "train": TrainConfig, "eval": EvalConfig, "": Config}  # fmt: skip


def _numeric_keys() -> list[str]:
    """Every int/float key (also optional ones and tuples of numbers) of every section."""
    keys = []
    for prefix, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            args = set(typing.get_args(hint)) | {hint}
            if args & {int, float} or any(typing.get_args(a) and set(typing.get_args(a)) <= {int, float, Ellipsis}
                                          for a in args):  # fmt: skip
                keys.append(f"{prefix}.{f.name}" if prefix else f.name)
    return keys


def test_every_numeric_key_has_a_range():
    keys = _numeric_keys()
    assert {"train.lr", "train.betas", "backbone.layers", "method.n_ctx", "seed"} <= set(keys)
    ranged = {f"{p}.{k}" if p else k for p, names in RANGES.items() for k in names}
    assert set(keys) == ranged


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-1", "train.lr must be > 0, got -1.0"),
        ("train.lr=0", "train.lr must be > 0, got 0.0"),
        ("train.lr=.inf", "train.lr must be a finite number, got inf"),
        ("train.lr=.nan", "train.lr must be a finite number, got nan"),
        ("train.stage1_epochs=-1", "train.stage1_epochs must be >= 0, got -1"),
        ("train.stage1_scr_epochs=-2", "train.stage1_scr_epochs must be >= 0, got -2"),
        ("train.stage2_epochs=-1", "train.stage2_epochs must be >= 0, got -1"),
        ("train.stage2_dpca_epochs=-1", "train.stage2_dpca_epochs must be >= 0, got -1"),
        ("train.stage1_batch_size=0", "train.stage1_batch_size must be >= 1, got 0"),
        ("train.stage2_batch_size=0", "train.stage2_batch_size must be >= 1, got 0"),
        ("train.betas=[0.5, 1.0]", "train.betas entries must lie in [0, 1), got [0.5, 1.0]"),
        ("train.betas=[-0.1, 0.9]", "train.betas entries must lie in [0, 1), got [-0.1, 0.9]"),
        ("backbone.batch_size=0", "backbone.batch_size must be >= 1, got 0"),
        ("backbone.vv_start=0", "backbone.vv_start must be >= 1, got 0"),
        ("backbone.layers=[0, 12]", "backbone.layers entries must be >= 1, got [0, 12]"),
        ("method.n_ctx=0", "method.n_ctx must be >= 1, got 0"),
        ("method.temperature=0", "method.temperature must be > 0, got 0.0"),
        ("method.temperature=-0.07", "method.temperature must be > 0, got -0.07"),
        ("method.deep_tokens=-1", "method.deep_tokens must be >= 0, got -1"),
        ("method.deep_depth=-1", "method.deep_depth must be >= 0, got -1"),
        ("method.scr_lambda=-1", "method.scr_lambda must be >= 0, got -1.0"),
        ("method.dpca_gamma=-0.1", "method.dpca_gamma must be >= 0, got -0.1"),
        ("method.alpha=1.5", "method.alpha must lie in [0, 1], got 1.5"),
        ("method.beta=-0.5", "method.beta must lie in [0, 1], got -0.5"),
        ("method.smoothing_sigma=-1", "method.smoothing_sigma must be >= 0, got -1.0"),
        ("method.grid_sigma=-4", "method.grid_sigma must be >= 0, got -4.0"),
        ("method.fewshot_weight=1.5", "method.fewshot_weight must lie in [0, 1], got 1.5"),
        ("data.plane_fit_threshold=0", "data.plane_fit_threshold must be > 0, got 0.0"),
        ("data.plane_cut_distance=-0.001", "data.plane_cut_distance must be >= 0, got -0.001"),
        ("data.cluster_radius=0", "data.cluster_radius must be > 0, got 0.0"),
        ("data.max_points=5", "data.max_points must be >= 16, got 5"),
        ("data.limit_per_split=0", "data.limit_per_split must be >= 1, got 0"),
        ("render.image_size=1", "render.image_size must lie in [2, 4096], got 1"),
        ("render.image_size=100000", "render.image_size must lie in [2, 4096], got 100000"),
        ("render.splat_radius=100", "render.splat_radius must lie in [0, 64], got 100.0"),
        ("eval.grid_size=1", "eval.grid_size must be >= 2, got 1"),
        ("eval.max_fpr=0", "eval.max_fpr must lie in (0, 1], got 0.0"),
        ("eval.max_fpr=1.5", "eval.max_fpr must lie in (0, 1], got 1.5"),
        ("eval.batch_size=0", "eval.batch_size must be >= 1, got 0"),
        ("eval.workers=-2", "eval.workers must be >= 0, got -2"),
        ("seed=-1", "seed must lie in [0, 4294967295], got -1"),
        ("seed=4294967296", "seed must lie in [0, 4294967295], got 4294967296"),
    ],
)
def test_out_of_range_values_name_the_full_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_every_ranged_key_is_tested():
    tested = {o.split("=")[0] for o, _ in test_out_of_range_values_name_the_full_key.pytestmark[0].args[1]}
    assert tested == set(_numeric_keys())


@pytest.mark.parametrize(
    "override",
    ["train.stage1_epochs=0", "train.stage2_dpca_epochs=0", "train.stage1_batch_size=1",
     "train.betas=[0.0, 0.999]", "train.lr=1e-8", "method.alpha=0", "method.beta=1",
     "method.deep_tokens=0", "method.deep_depth=0", "method.scr_lambda=0", "method.smoothing_sigma=0",
     "data.plane_cut_distance=0", "data.max_points=16", "data.max_points=null", "render.image_size=2",
     "render.image_size=4096", "render.splat_radius=0", "eval.max_fpr=1", "eval.grid_size=2",
     "eval.workers=0", "eval.batch_size=1",
     "seed=0", "seed=4294967295", "backbone.vv_start=null"],
)  # fmt: skip
def test_values_at_the_ends_of_the_ranges_are_accepted(override):
    load_config(None, [override])


def test_exponents_without_a_dot_are_numbers():
    """YAML 1.1 reads ``1e-4`` as a string; ``--set train.lr=1e-4`` must still work."""
    assert load_config(None, ["train.lr=1e-4"]).train.lr == 1e-4
    assert load_config(None, ["data.cluster_radius=6e-3"]).data.cluster_radius == 6e-3
    with pytest.raises(ConfigError, match="train.lr must be a number, got 'fast'"):
        load_config(None, ["train.lr=fast"])


def test_sections_check_themselves_when_built_directly():
    with pytest.raises(ConfigError, match=r"^train\.lr must be > 0, got -1$"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"^train\.stage2_epochs must be >= 0"):
        dataclasses.replace(TrainConfig(), stage2_epochs=-3)
    with pytest.raises(ConfigError, match=r"^method\.temperature must be > 0"):
        Config().replace(**{"method.temperature": 0.0})
    with pytest.raises(ConfigError, match=r"^method\.variant must be one of"):
        MethodConfig(variant="nope")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "src" / "align3d_ad" / "configs").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_packaged_configs_load(path):
    assert load_config(path) == load_config(Path(__file__).parents[1] / "configs" / path.name)
