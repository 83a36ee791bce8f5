"""Synthetic benchmark data: exact on-disk formats, determinism, exact labels, reader round trips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from align3d_ad.data.datasets import get_dataset
from align3d_ad.data.formats import read_pcd
from align3d_ad.data.inspect import inspect_dataset
from align3d_ad.errors import ConfigError
from align3d_ad.synth import MANIFEST_NAME, generate_dataset, list_synth_categories
from align3d_ad.synth import eyecandies as eye_mod
from align3d_ad.synth.defects import GEOMETRIC_KINDS, draw_defect
from align3d_ad.synth.eyecandies import encode_normals, render_eyecandies_scan
from align3d_ad.synth.mvtec import (
    mvtec_camera,
    mvtec_folders,
    mvtec_rgb,
    render_mvtec_scan,
)
from align3d_ad.synth.real3d import make_test_scan
from align3d_ad.synth.scene import compose, draw_clean_scan
from align3d_ad.synth.streams import FORMAT_CODES, LAYOUT, Streams

MVTEC_CATS = ["cookie", "gland"]  # with and without a `combined` folder
EYE_CAT, REAL_CAT = "gear", "bagel"
EYE_ITEMS = {f"image_{k}" for k in range(6)} | {"depth", "info_depth", "normals", "pose"}
EYE_ITEMS_LABELLED = (
    EYE_ITEMS
    | {"obj_params", "metadata", "mask"}
    | {f"{kind}_mask" for kind in ("bumps", "dents", "colors", "normals")}
)
GEOMETRY_FILES = (".tiff", "depth.png", ".pcd")
COMPARED = ("samples", "normal", "anomalous", "unlabelled", "defect_types", "anomalous_points")


@pytest.fixture(scope="module")
def synth_roots(tmp_path_factory) -> dict[str, Path]:
    """One small dataset per format (seed 0)."""
    base = tmp_path_factory.mktemp("synth")
    plan = {"mvtec3d": MVTEC_CATS, "eyecandies": [EYE_CAT], "real3d": [REAL_CAT]}
    for name, cats in plan.items():
        generate_dataset(base / name, format=name, categories=cats, seed=0, small=True)
    return {name: base / name for name in plan}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _streams(fmt: str, category: str, seed: int = 0) -> Streams:
    return Streams(seed, FORMAT_CODES[fmt], list_synth_categories().index(category))


def test_list_synth_categories_objects_fit_their_frame():
    names = list_synth_categories()
    assert len(names) >= 8 and len(set(names)) == len(names)
    for category in names:
        camera, pitch = mvtec_camera(category, True)
        for index in range(3):
            rng = np.random.default_rng([7, index])
            clean = draw_clean_scan(
                category, camera, rng, distance=0.5, pitch=pitch, dropouts=False
            )
            fp = clean.footprint
            assert fp.sum() > 100, category
            assert not (fp[0].any() or fp[-1].any() or fp[:, 0].any() or fp[:, -1].any()), category
            assert 0.002 < clean.height.max() < 0.03, category  # a few mm to cm high


@pytest.mark.parametrize(
    "fmt,cat", [("mvtec3d", "cookie"), ("eyecandies", "gear"), ("real3d", "bagel")]
)
def test_generate_dataset_is_deterministic(tmp_path, synth_roots, fmt, cat):
    generate_dataset(tmp_path / "again", format=fmt, categories=[cat], seed=0, small=True)
    generate_dataset(tmp_path / "other", format=fmt, categories=[cat], seed=1, small=True)
    again, other = _tree(tmp_path / "again"), _tree(tmp_path / "other")
    first = _tree(synth_roots[fmt])  # written with other categories: same bytes for this one
    sample_files = [k for k in again if k != MANIFEST_NAME]
    assert sample_files and all(again[k] == first[k] for k in sample_files)  # same seed, same bytes
    normalised = lambda tree: sorted(re.sub(r"/\d+_", "/N_", k) for k in tree)  # noqa: E731
    assert normalised(other) == normalised(again)  # another seed: the same layout (Real3D ids vary)
    geometry = lambda tree: {v for k, v in tree.items() if k.endswith(GEOMETRY_FILES)}  # noqa: E731
    assert geometry(again) and not geometry(other) & geometry(again)  # ... and other geometry


def test_mvtec_files_have_the_real_format(synth_roots):
    root = synth_roots["mvtec3d"]
    for cat in MVTEC_CATS:
        cdir = root / cat
        params = json.loads((cdir / "calibration" / "camera_parameters.json").read_text())
        assert {"focus", "kappa", "sx", "sy", "cx", "cy", "image_width", "image_height"} <= set(
            params
        )
        classes = json.loads((cdir / "class_ids.json").read_text())
        assert (cdir / "license.txt").is_file() and (cdir / "readme.txt").is_file()
        assert classes["0"] == "good" and set(classes) == {"0", "253", "254", "255"}
        assert not (cdir / "train" / "good" / "gt").exists()
        assert not (cdir / "validation" / "good" / "gt").exists()
        for xyz_path in sorted(cdir.glob("*/*/xyz/*.tiff")):
            xyz = tifffile.imread(xyz_path)
            h, w = xyz.shape[:2]
            assert xyz.dtype == np.float32 and xyz.shape == (h, w, 3) and h != w
            assert (h, w) == (params["image_height"], params["image_width"])
            missing = (xyz == 0).all(-1)
            assert 0 < missing.sum() < 0.2 * h * w  # exact zeros mark missing points
            assert not ((xyz == 0).any(-1) & ~missing).any() and np.isfinite(xyz).all()
            z = xyz[~missing, 2]
            assert z.min() > 0.4 and z.max() < 0.6 and np.abs(xyz[~missing, :2]).max() < 0.06
            folder = xyz_path.parent.parent
            rgb = Image.open(folder / "rgb" / f"{xyz_path.stem}.png")
            assert rgb.mode == "RGB" and rgb.size == (w, h)
            if folder.parent.name != "test":
                continue
            gt = Image.open(folder / "gt" / f"{xyz_path.stem}.png")
            values = set(np.unique(np.asarray(gt)).tolist())
            assert gt.mode == "L" and gt.size == (w, h)
            if folder.name == "good":
                assert values == {0}
            elif folder.name == "combined":
                assert len(values - {0}) == 2 and values <= {0, 253, 254, 255}
            else:
                value = {name: int(v) for v, name in classes.items()}[folder.name]
                assert values == {0, value}


def test_mvtec_reader_returns_the_rendered_scan(synth_roots):
    reader = get_dataset("mvtec3d", synth_roots["mvtec3d"])
    camera, pitch = mvtec_camera("cookie", True)
    for split_code, (split, folder, _) in enumerate(mvtec_folders("cookie", True)):
        if folder not in ("hole", "combined", "good"):
            continue
        sample = reader.load(reader.find(f"{split}/{folder}/000", category="cookie"))
        scan = render_mvtec_scan(
            "cookie", camera, pitch, _streams("mvtec3d", "cookie"), split_code, 0, folder
        )
        valid = scan.valid.reshape(-1)
        assert np.array_equal(sample.grid_index, np.flatnonzero(valid))
        assert np.array_equal(sample.points, scan.xyz.reshape(-1, 3)[valid])
        assert np.array_equal(sample.point_labels, (scan.labels > 0).reshape(-1)[valid])
        rgb = mvtec_rgb(scan).reshape(-1, 3)[valid]
        assert np.allclose(sample.colors, rgb / 255.0, atol=1e-6)
        if folder == "hole":  # gt lies partly on missing points, like real holes
            assert ((scan.labels > 0) & ~scan.valid).any() and sample.point_labels.any()


@pytest.mark.parametrize("fmt", ["mvtec3d", "eyecandies", "real3d"])
def test_manifest_matches_what_readers_see(synth_roots, fmt):
    manifest = json.loads((synth_roots[fmt] / MANIFEST_NAME).read_text())
    report = inspect_dataset(fmt, synth_roots[fmt]).to_dict()
    assert manifest["format"] == fmt and manifest["complete"] and report["problems"] == []
    assert set(report["categories"]) == set(manifest["categories"])
    for cat, splits in manifest["categories"].items():
        assert list(report["categories"][cat]) == list(splits)
        for split, stats in splits.items():
            seen = report["categories"][cat][split]
            assert {k: seen[k] for k in COMPARED} == stats, (cat, split)
    test_split = {"mvtec3d": "test", "eyecandies": "test_public", "real3d": "test"}[fmt]
    for splits in manifest["categories"].values():
        stats = splits[test_split]
        assert stats["anomalous"] > 0 and stats["normal"] > 0 and stats["anomalous_points"] > 0


def test_eyecandies_files_have_the_real_format(synth_roots):
    cat_dir = synth_roots["eyecandies"] / "Gear"
    assert sorted(p.name for p in cat_dir.iterdir()) == sorted(eye_mod.SPLITS)
    for split in eye_mod.SPLITS:
        groups: dict[str, set[str]] = {}
        for path in (cat_dir / split / "data").iterdir():
            head, _, rest = path.name.partition("_")
            groups.setdefault(head, set()).add(rest.split(".")[0])
        width = len(str(len(groups) - 1))
        assert all(len(sid) == width for sid in groups)
        expected = EYE_ITEMS if split == "test_private" else EYE_ITEMS_LABELLED
        assert all(items == expected for items in groups.values()), split
    data = cat_dir / "test_public" / "data"
    for meta_path in sorted(data.glob("*_metadata.yaml")):
        sid = meta_path.name.split("_")[0]
        anomalous = yaml.safe_load(meta_path.read_text())["anomalous"]
        mask = np.asarray(Image.open(data / f"{sid}_mask.png"))
        kinds = [
            np.asarray(Image.open(data / f"{sid}_{k}_mask.png"))
            for k in ("bumps", "dents", "colors", "normals")
        ]
        assert set(np.unique(mask).tolist()) <= {0, 255} and bool(mask.any()) == bool(anomalous)
        assert np.array_equal(mask > 0, np.logical_or.reduce([k > 0 for k in kinds]))
        depth = Image.open(data / f"{sid}_depth.png")
        assert depth.mode == "I;16" and depth.size == (64, 64)
        norm = yaml.safe_load((data / f"{sid}_info_depth.yaml").read_text())["normalization"]
        assert (
            isinstance(norm["min"], float)
            and isinstance(norm["max"], float)
            and norm["max"] > norm["min"]
        )
        assert np.loadtxt(data / f"{sid}_pose.txt").shape == (4, 4)


def test_eyecandies_depth_reads_back_to_the_rendered_points(synth_roots):
    root = synth_roots["eyecandies"]
    camera_reader = get_dataset("eyecandies", root, pose="camera")
    world_reader = get_dataset("eyecandies", root)
    streams = _streams("eyecandies", EYE_CAT)
    good, bad = eye_mod.COUNTS[True].public
    order = streams.rng(2, 0, LAYOUT).permutation(good + bad)  # test_public is split 2
    for index in range(good + bad):
        types = eye_mod.bad_types(int(order[index])) if order[index] < bad else ()
        scan = render_eyecandies_scan(EYE_CAT, True, streams, 2, index, types)
        ref = camera_reader.find(f"test_public/{index}", category="Gear")
        sample = camera_reader.load(ref)
        step = (
            scan.depth.max() - scan.depth.min() + 0.002
        ) / 65535  # one depth quantum (upper bound)
        assert np.abs(sample.points - scan.xyz.reshape(-1, 3)).max() < step
        assert np.array_equal(sample.point_labels, (scan.labels > 0).reshape(-1))
        assert sorted(world_reader.load(ref).meta["anomaly_types"]) == sorted(types)
        world = world_reader.load(ref).points  # pose.txt: camera -> plane frame, z = height
        height_above_plane = world[:, 2].reshape(64, 64)
        assert np.abs(height_above_plane[0, :]).max() < 1e-4  # top image row: background plane


def test_eyecandies_ids_are_padded_to_the_width_of_n_minus_1(tmp_path, monkeypatch):
    monkeypatch.setitem(eye_mod.COUNTS, True, eye_mod.Counts(11, 1, (1, 1), (0, 1)))
    generate_dataset(tmp_path, format="eyecandies", categories=["plate"], small=True)
    train = sorted(
        {p.name.split("_")[0] for p in (tmp_path / "Plate" / "train" / "data").iterdir()}
    )
    assert train == [f"{i:02d}" for i in range(11)]
    reader = get_dataset("eyecandies", tmp_path)
    assert reader.refs("Plate", "test_private")[0].label is None


def test_real3d_files_have_the_real_format(synth_roots):
    cat_dir = synth_roots["real3d"] / REAL_CAT
    train = sorted(p.name for p in (cat_dir / "train").iterdir())
    assert train == ["1_template.pcd", "2_template.pcd"]
    encodings = set()
    for pcd in sorted((cat_dir / "test").iterdir()):
        match = re.fullmatch(r"(\d+)_(good|bulge|sink)(_cut)?\.pcd", pcd.name)
        assert match, pcd.name
        header = pcd.read_bytes().split(b"\nDATA ")[1].split(b"\n")[0].decode()
        encodings.add(header)
        gt = cat_dir / "gt" / f"{pcd.stem}.txt"
        assert gt.is_file() == (match[2] != "good")
        if match[2] == "good":
            continue
        lines = gt.read_text().splitlines()
        assert all(
            re.fullmatch(r"(-?\d+\.\d{6} ){3}(0|1|0\.000000|1\.000000)", line) for line in lines
        )
        fields = read_pcd(pcd)
        points = np.stack([fields[a] for a in "xyz"], 1).astype(np.float64)
        table = np.loadtxt(gt)
        key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 - order-free comparison
        assert np.abs(key(np.round(points, 6)) - key(table[:, :3])).max() < 1e-5
    assert encodings == {"ascii", "binary", "binary_compressed"}


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).reshape(a.shape[0], a.shape[1], -1).any(-1)


@pytest.mark.parametrize("kind", [*GEOMETRIC_KINDS, "contamination"])
def test_mvtec_defects_change_the_scan_exactly_on_labels(kind):
    camera, pitch = mvtec_camera("plate", True)
    for index in range(3):
        clean = draw_clean_scan(
            "plate",
            camera,
            np.random.default_rng([3, index]),
            distance=0.5,
            pitch=pitch,
            dropouts=True,
        )
        effect = draw_defect(kind, clean.context(), np.random.default_rng([4, index]))
        good, bad = compose(clean), compose(clean, [effect])
        region = bad.labels > 0
        assert (region & bad.valid).any()
        moved = _changed(good.xyz, bad.xyz)
        if kind == "contamination":
            assert not moved.any()
            assert np.array_equal(_changed(mvtec_rgb(good), mvtec_rgb(bad)), region)
        else:
            assert np.array_equal(moved, region & ~clean.blocked)
        if kind == "hole":
            assert (
                region & ~bad.valid & ~clean.blocked
            ).any()  # hole core: no points, still labelled


@pytest.mark.parametrize(
    "types", [("bumps",), ("dents",), ("colors",), ("normals",), ("dents", "colors")]
)
def test_eyecandies_anomalies_change_the_scan_exactly_on_labels(types):
    streams = _streams("eyecandies", "potato")
    bad = render_eyecandies_scan("potato", True, streams, 2, 5, types)
    good = render_eyecandies_scan("potato", True, streams, 2, 5, ())
    region = bad.labels > 0
    assert region.any() and bad.valid.all()
    geometric = {"bumps", "dents"}
    moved = good.depth != bad.depth
    recoloured = (good.albedo != bad.albedo).any(-1)
    turned = _changed(encode_normals(good.normals), encode_normals(bad.normals))
    for name, region_k in zip(types, bad.regions):
        if name == "colors":
            assert np.array_equal(recoloured, region_k)
        if name == "normals":
            assert turned[region_k].all()
    dented = [r for t, r in zip(types, bad.regions) if t in geometric]
    assert np.array_equal(moved, np.logical_or.reduce(dented) if dented else np.zeros_like(region))


def _rngs(index: int) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng([5, index]), np.random.default_rng([6, index])


@pytest.mark.parametrize("kinds", [("bulge",), ("sink",), ("bulge", "cut"), ("sink", "cut")])
def test_real3d_defects_move_exactly_the_labelled_points(kinds):
    for index in range(2):
        good = make_test_scan("cookie", 1200, (), *_rngs(index))
        bad = make_test_scan("cookie", 1200, kinds, *_rngs(index))
        assert len(good.points) == len(bad.points) and bad.labels.any()
        moved = (good.points.astype(np.float32) != bad.points.astype(np.float32)).any(1)
        assert np.array_equal(moved, bad.labels)
        assert bad.labels.mean() < 0.25


@pytest.mark.parametrize(
    "fmt,cat,folder", [("mvtec3d", "cookie", "cookie"), ("eyecandies", "gear", "Gear"),
                       ("real3d", "bagel", "bagel")],
)  # fmt: skip
def test_train_good_adds_normal_training_scans_and_keeps_every_other_file(
    tmp_path, synth_roots, fmt, cat, folder
):
    manifest = generate_dataset(tmp_path, format=fmt, categories=[cat], small=True, train_good=5)
    more, first = _tree(tmp_path), _tree(synth_roots[fmt])
    first = {k: v for k, v in first.items() if k.startswith(folder + "/")}
    assert all(more[k] == v for k, v in first.items())  # every scan of the default size, same bytes
    assert manifest.categories[folder]["train"].normal == 5
    assert manifest.categories[folder]["train"].samples == 5
    for split, stats in manifest.categories[folder].items():  # the other splits as by default
        if split != "train":
            default = json.loads((synth_roots[fmt] / MANIFEST_NAME).read_text())
            assert stats.to_dict() == default["categories"][folder][split], split
    reader = get_dataset(fmt, tmp_path)
    assert len([r for r in reader.refs(folder, "train") if r.label in (0, None)]) == 5


def test_synth_command_takes_train_good(tmp_path, capsys):
    from align3d_ad.app.cli import EXIT_USER_ERROR, main

    assert main(["synth", "--out", str(tmp_path / "d"), "--small", "--categories", "cookie",
                 "--train-good", "8", "--quiet"]) == 0  # fmt: skip
    assert len(list((tmp_path / "d" / "cookie" / "train" / "good" / "xyz").glob("*.tiff"))) == 8
    assert main(["synth", "--out", str(tmp_path / "e"), "--small", "--train-good", "0"]) == (
        EXIT_USER_ERROR
    )
    assert "train_good must be a positive integer, got 0" in capsys.readouterr().err


def test_generate_dataset_keeps_each_category_independent(tmp_path, synth_roots):
    generate_dataset(tmp_path, format="mvtec3d", categories=["gland"], seed=0, small=True)
    alone = _tree(tmp_path / "gland")
    together = _tree(synth_roots["mvtec3d"] / "gland")
    assert alone == together


def test_generate_dataset_never_overwrites_user_data(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="previous synth output"):
        generate_dataset(user, format="real3d", categories=["dowel"], small=True)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    out = tmp_path / "synth"
    generate_dataset(out, format="real3d", categories=["dowel"], small=True)
    generate_dataset(
        out, format="mvtec3d", categories=["foam"], small=True
    )  # replaces its own output
    assert sorted(p.name for p in out.iterdir()) == ["foam", MANIFEST_NAME]
    (out / "extra").mkdir()
    with pytest.raises(ConfigError, match="extra"):
        generate_dataset(out, format="mvtec3d", categories=["foam"], small=True)
    assert (out / "foam").is_dir()


@pytest.mark.parametrize(
    "options,match",
    [
        ({"format": "kitti"}, "format must be one of"),
        ({"categories": ["unicorn"]}, "categories must be among"),
        ({"seed": -1}, "seed must be"),
        ({"train_good": 0}, "train_good must be a positive integer, got 0"),
        ({"train_good": True}, "train_good must be a positive integer"),
    ],
)
def test_generate_dataset_rejects_bad_options(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        generate_dataset(tmp_path / "x", small=True, **options)
