"""Plain-folder reader and the dataset registry."""

from __future__ import annotations

import pytest

from align3d_ad.data.datasets import (
    DatasetReader,
    FolderReader,
    get_dataset,
    list_datasets,
    register_dataset,
)
from align3d_ad.errors import ConfigError, DatasetFormatError


def test_folder_finds_clouds_recursively_in_natural_order(folder_tiny):
    reader = get_dataset("folder", folder_tiny.root)
    assert reader.categories() == ["a", "b"]
    assert reader.splits("a") == ["test"] and reader.labelled_split == "test"
    ids = [ref.sample_id for ref in reader.iter_refs()]
    assert ids == ["a/p1.pcd", "a/p2.npy", "a/p10.pcd", "b/x.xyz"]
    assert reader.skipped == [folder_tiny.root / "notes.md"]  # .cache/ is hidden, not skipped
    assert all(ref.label is None and ref.defect_type is None for ref in reader.iter_refs())


def test_folder_loads_unlabelled_samples(folder_tiny):
    reader = get_dataset("folder", folder_tiny.root)
    for ref in reader.iter_refs():
        sample = reader.load(ref)
        assert sample.num_points == folder_tiny.samples[ref.sample_id]
        assert (sample.label, sample.point_labels) == (None, None)  # x.xyz has a label column
        assert (sample.category, sample.sample_id) == (ref.category, ref.sample_id)
        assert sample.source == folder_tiny.root / ref.sample_id


def test_folder_accepts_a_single_file_and_suffix_filter(folder_tiny):
    reader = FolderReader(folder_tiny.root / "a" / "p2.npy")
    assert [r.key for r in reader.iter_refs()] == ["a/p2.npy"]
    assert reader.load(reader.refs("a", "test")[0]).num_points == 30
    only_pcd = get_dataset("folder", folder_tiny.root, suffixes=["PCD"])
    assert [r.sample_id for r in only_pcd.iter_refs()] == ["a/p1.pcd", "a/p10.pcd"]
    assert sorted(p.name for p in only_pcd.skipped) == ["notes.md", "p2.npy", "x.xyz"]
    with pytest.raises(ConfigError, match="suffixes must be"):
        FolderReader(folder_tiny.root, suffixes=".pcd")


def test_folder_broken_file_raises_with_its_name(folder_tiny):
    (folder_tiny.root / "a" / "p1.pcd").write_bytes(b"garbage")
    reader = get_dataset("folder", folder_tiny.root)
    with pytest.raises(DatasetFormatError, match="p1.pcd"):
        reader.load(reader.refs("a", "test")[0])


def test_registry_lists_and_builds_readers(folder_tiny, tmp_path):
    assert list_datasets() == ["eyecandies", "folder", "mvtec3d", "real3d"]
    with pytest.raises(
        ConfigError,
        match=r"dataset must be one of \['eyecandies', 'folder', 'mvtec3d', 'real3d'\], got 'kitti'",
    ):
        get_dataset("kitti", folder_tiny.root)
    with pytest.raises(
        ConfigError, match=r"options of dataset 'mvtec3d' must be among none, got \['pose'\]"
    ):
        get_dataset("mvtec3d", folder_tiny.root, pose="world")
    for name in list_datasets():
        with pytest.raises(DatasetFormatError, match="missing: folder does not exist"):
            get_dataset(name, tmp_path / "missing")


def test_register_dataset_validates_and_rejects_name_clashes(folder_tiny):
    with pytest.raises(ConfigError, match="must subclass DatasetReader"):
        register_dataset(dict)

    class Clash(FolderReader):
        name = "mvtec3d"

    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(Clash)

    class Extra(FolderReader):
        name = "extra_test_reader"

    try:
        assert register_dataset(Extra) is Extra
        assert isinstance(get_dataset("extra_test_reader", folder_tiny.root), DatasetReader)
    finally:
        from align3d_ad.data.datasets import base

        base._REGISTRY.pop("extra_test_reader", None)
