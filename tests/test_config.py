"""Configuration: YAML files, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from align3d_ad.config import Config, apply_overrides, config_from_dict, load_config
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
