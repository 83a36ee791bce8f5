"""The Eyecandies up axis, derived from ``pose.txt`` (issue 17, point 8).

Fixtures are written like the real underfolders (16-bit depth PNG, ``info_depth.yaml``,
``pose.txt`` read with ``np.loadtxt``, ``image_5.png``; unlabelled ``train`` split) in two poses:
``Above`` (the camera 0.9 m above the table looking down, world z up: what the ``eyecandies`` views
assume) and ``Below`` (identity pose: the camera frame is the world frame, so the camera looks
along +z, up at the object from below).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.data import get_dataset
from align3d_ad.data.datasets.eyecandies import TURN_UP, camera_direction
from align3d_ad.data.inspect import inspect_dataset
from align3d_ad.errors import ConfigError, DatasetFormatError
from align3d_ad.render import RenderSettings, render_samples
from align3d_ad.render.facing import MAX_FACING_ANGLE_DEG, facing_angle

H, W = 24, 32
D_MIN, D_MAX = 0.85, 0.95
LOOKING_DOWN = np.array([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 0.9], [0, 0, 0, 1]])
POSES = {"Above": LOOKING_DOWN, "Below": np.eye(4)}
SETTINGS = RenderSettings(image_size=48)


def _depth() -> np.ndarray:
    """0.90 m everywhere, a 6 x 8 bump 2 cm nearer the camera (it faces the camera)."""
    d = np.full((H, W), 0.90)
    d[8:14, 10:18] = 0.88
    return d


def _write(root: Path, category: str, pose: np.ndarray, ids=("000", "001")) -> None:
    data = root / category / "train" / "data"
    data.mkdir(parents=True)
    raw = np.round((_depth() - D_MIN) / (D_MAX - D_MIN) * 65535).astype(np.uint16)
    r, c = np.indices((H, W))
    rgb = np.stack([r * 10, c * 7, np.full((H, W), 90)], -1).astype(np.uint8)
    for sid in ids:
        Image.fromarray(raw).save(data / f"{sid}_depth.png")
        Image.fromarray(rgb).save(data / f"{sid}_image_5.png")
        (data / f"{sid}_info_depth.yaml").write_text(
            f"normalization:\n  min: {D_MIN:.2f}\n  max: {D_MAX:.2f}\n"
        )
        np.savetxt(data / f"{sid}_pose.txt", pose, fmt="%.8f")


@pytest.fixture
def posed(tmp_path) -> Path:
    root = tmp_path / "eyecandies"
    for category, pose in POSES.items():
        _write(root, category, pose)
    return root


def _load(root: Path, category: str, **options):
    reader = get_dataset("eyecandies", root, **options)
    return reader.load(reader.refs(category, "train")[0])


def test_camera_direction_is_the_pose_rotation_of_the_camera_z_axis():
    np.testing.assert_allclose(camera_direction(np.eye(4)), [0, 0, 1])
    np.testing.assert_allclose(camera_direction(LOOKING_DOWN), [0, 0, -1])
    tilt = np.eye(4)
    a = math.radians(150)
    tilt[1:3, 1:3] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    tilt[:3, 3] = [5.0, 6.0, 7.0]  # the translation does not matter
    np.testing.assert_allclose(camera_direction(tilt), [0, -0.5, -math.sqrt(3) / 2], atol=1e-12)
    np.testing.assert_allclose(camera_direction(None), [0, 0, 1])  # camera frame


def test_reader_gives_the_camera_direction_in_the_frame_of_its_points(posed):
    above, below = _load(posed, "Above"), _load(posed, "Below")
    np.testing.assert_allclose(above.meta["view_direction"], [0, 0, -1])
    np.testing.assert_allclose(below.meta["view_direction"], [0, 0, 1])
    assert not above.meta["turned_up"] and not below.meta["turned_up"]
    # the bump faces the camera: above the table (z up) in Above, below it in Below
    bump = above.to_grid(above.points)[8:14, 10:18, 2]
    table = above.to_grid(above.points)[0, 0, 2]
    assert np.all(bump > table) and np.isclose(table, 0.0, atol=1e-6)
    in_camera = _load(posed, "Above", pose="camera")
    np.testing.assert_allclose(in_camera.meta["view_direction"], [0, 0, 1])


def test_inspect_reports_the_camera_direction_per_category(posed, capsys):
    report = inspect_dataset("eyecandies", posed)
    view = {cat: splits["train"].to_dict()["view_direction"] for cat, splits in report.categories.items()}
    assert view == {
        "Above": {"mean": [0.0, 0.0, -1.0], "from_above": 2, "from_below": 0},
        "Below": {"mean": [0.0, 0.0, 1.0], "from_above": 0, "from_below": 2},
    }
    text = report.to_text()
    assert "Above: camera looks along (+0.00, +0.00, -1.00) on average; from above (z up) in 2/2" in text
    assert "Below: camera looks along (+0.00, +0.00, +1.00) on average; from above (z up) in 0/2" in text
    assert main(["inspect", "--dataset", "eyecandies", "--root", str(posed), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["categories"]["Below"]["train"]["view_direction"]["from_below"] == 2


def test_views_refuse_to_render_a_scan_from_behind_its_camera(posed):
    above, below = _load(posed, "Above"), _load(posed, "Below")
    render_samples([above], "eyecandies", SETTINGS)  # seen from the side its camera saw
    assert facing_angle(below.meta["view_direction"], "eyecandies") == pytest.approx(180.0)
    with pytest.raises(DatasetFormatError) as err:
        render_samples([above, below], "eyecandies", SETTINGS)
    text = str(err.value)
    assert "Below/train/data/000_pose.txt" in text and "(+0.00, +0.00, +1.00)" in text
    assert "would render the side facing away from the camera" in text and "up=auto" in text
    # camera-frame clouds: the sensor pre-transform of the mvtec3d views turns them, identity does not
    in_camera = _load(posed, "Below", pose="camera")
    render_samples([in_camera], "mvtec3d", SETTINGS)
    with pytest.raises(DatasetFormatError, match="would render the side facing away"):
        render_samples([in_camera], "eyecandies", SETTINGS)
    assert MAX_FACING_ANGLE_DEG < 90


def test_up_auto_turns_exactly_the_scans_seen_from_below(posed):
    above, below = _load(posed, "Above", up="auto"), _load(posed, "Below", up="auto")
    np.testing.assert_array_equal(above.points, _load(posed, "Above").points)  # untouched
    assert not above.meta["turned_up"] and below.meta["turned_up"]
    raw_below = _load(posed, "Below").points
    np.testing.assert_allclose(below.points, raw_below @ TURN_UP, atol=1e-7)
    np.testing.assert_allclose(below.meta["view_direction"], [0, 0, -1])
    # turned, Below is Above moved by the camera's height: the same views see the same images
    both = render_samples([above, below], "eyecandies", SETTINGS)
    np.testing.assert_allclose(both.images[1].cpu().numpy(), both.images[0].cpu().numpy(), atol=1e-5)


def test_up_minus_z_turns_every_scan(posed):
    above, below = _load(posed, "Above", up="-z"), _load(posed, "Below", up="-z")
    assert above.meta["turned_up"] and below.meta["turned_up"]
    np.testing.assert_allclose(above.meta["view_direction"], [0, 0, 1])
    render_samples([below], "eyecandies", SETTINGS)
    with pytest.raises(DatasetFormatError, match="Above/train/data/000_pose.txt"):
        render_samples([above], "eyecandies", SETTINGS)


def test_bad_up_option_is_one_config_error(posed):
    with pytest.raises(ConfigError, match=r"up must be one of \['z', '-z', 'auto'\], got 'y'"):
        get_dataset("eyecandies", posed, up="y")


def test_cli_render_of_a_scan_seen_from_below_is_one_line(posed, tmp_path, capsys):
    code = main(["render", "--dataset", "eyecandies", "--root", str(posed), "--sample",
                 "Below/train/000", "--out", str(tmp_path / "r"), "--size", "48", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USER_ERROR and len(err) == 1
    assert "000_pose.txt" in err[0] and "up=auto" in err[0]
    assert main(["render", "--dataset", "eyecandies", "--root", str(posed), "--sample",
                 "Above/train/000", "--out", str(tmp_path / "a"), "--size", "48", "--device", "cpu",
                 "--quiet"]) == 0  # fmt: skip
