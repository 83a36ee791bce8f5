"""View presets: rotations match their names, registry behaviour, config-style specs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from align3d_ad.errors import ConfigError
from align3d_ad.render import (
    ViewPreset,
    axis_rotation,
    get_view_preset,
    list_view_presets,
    register_view_preset,
    view_preset_from_spec,
)

# Hand-copied from METHOD.md §2 (degrees).
EXPECTED = {
    "mvtec3d": [("x", a) for a in (-45, -15, 0, 15, 45)] + [("y", a) for a in (-30, -15, 15, 30)],
    "eyecandies": [("x", a) for a in (-30, -15, 0, 10, 20)]
    + [("y", a) for a in (-30, -15, 15, 30)],
    "real3d": [("x", a) for a in (-144, -108, -72, -36, 0, 36, 72, 108, 144)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_view_preset_rotations_match_documented_angles(name):
    preset = get_view_preset(name)
    assert preset.num_views == len(EXPECTED[name]) == 9
    for rot, (axis, deg), label in zip(preset.rotations, EXPECTED[name], preset.labels):
        np.testing.assert_allclose(
            rot, Rotation.from_euler(axis, deg, degrees=True).as_matrix(), atol=1e-12
        )
        assert label == f"{axis}{deg}"


@pytest.mark.parametrize("name", list_view_presets())
def test_view_preset_every_entry_is_proper_rotation(name):
    preset = get_view_preset(name)
    full = preset.camera_rotations()
    np.testing.assert_allclose(
        full @ full.transpose(0, 2, 1), np.broadcast_to(np.eye(3), full.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(full), 1.0, atol=1e-12)
    assert not preset.rotations.flags.writeable


def test_view_preset_sensor_scans_are_flipped_to_face_camera():
    # Sensor frame looks along +z; the camera looks along -z: x stays, y and z flip.
    np.testing.assert_allclose(get_view_preset("mvtec3d").pre_transform, np.diag([1.0, -1.0, -1.0]))
    # The Eyecandies reader returns world-frame points (pose applied, z up): no flip needed.
    np.testing.assert_allclose(get_view_preset("eyecandies").pre_transform, np.eye(3))
    np.testing.assert_allclose(get_view_preset("real3d").pre_transform, np.eye(3))


def test_axis_rotation_is_right_handed():
    e = np.eye(3)
    np.testing.assert_allclose(axis_rotation("x", 90) @ e[1], e[2], atol=1e-12)
    np.testing.assert_allclose(axis_rotation("y", 90) @ e[2], e[0], atol=1e-12)
    np.testing.assert_allclose(axis_rotation("Z", 90) @ e[0], e[1], atol=1e-12)


def test_view_preset_from_spec_accepts_config_lists_and_arrays():
    preset = view_preset_from_spec([["y", "20"], ("x", -10.5)], "cfg", pre_transform="mvtec3d")
    np.testing.assert_allclose(preset.rotations[0], axis_rotation("y", 20))
    np.testing.assert_allclose(preset.rotations[1], axis_rotation("x", -10.5))
    np.testing.assert_allclose(preset.pre_transform, np.diag([1.0, -1.0, -1.0]))
    assert preset.labels == ("y20", "x-10.5")
    arr = view_preset_from_spec(np.stack([axis_rotation("z", 30)]), "arr")
    np.testing.assert_allclose(arr.rotations[0], axis_rotation("z", 30))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([], "at least one"),
        ([("w", 10)], "axis must be one of"),
        ([("x", "ten")], "number of degrees"),
        (["x10"], "pair"),
        (np.ones((1, 3, 3)), "proper rotations"),
        (np.stack([np.diag([1.0, 1.0, -1.0])]), "proper rotations"),
    ],
)
def test_view_preset_from_spec_rejects_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        view_preset_from_spec(spec)


def test_view_preset_registry_names_valid_choices_and_guards_overwrite():
    with pytest.raises(ConfigError, match="mvtec3d"):
        get_view_preset("nope")
    with pytest.raises(ConfigError, match="already registered"):
        register_view_preset(ViewPreset("mvtec3d", np.eye(3)[None]))
    custom = ViewPreset("test-two-views", np.stack([np.eye(3), axis_rotation("x", 90)]))
    register_view_preset(custom, overwrite=True)
    assert "test-two-views" in list_view_presets()
    assert get_view_preset("test-two-views") is custom
    assert get_view_preset(custom) is custom


def test_resolve_view_preset_accepts_names_and_config_lists():
    from align3d_ad.render import resolve_view_preset

    assert resolve_view_preset("real3d") is get_view_preset("real3d")
    custom = resolve_view_preset([["x", 5], ["y", -5]], pre_transform="mvtec3d")
    np.testing.assert_allclose(custom.rotations[1], axis_rotation("y", -5))
    np.testing.assert_allclose(custom.pre_transform, get_view_preset("mvtec3d").pre_transform)
