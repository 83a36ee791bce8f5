"""PCD and PLY I/O: round trips, hand-written files in the real layouts, and bad inputs."""

from __future__ import annotations

import struct

import lzf
import numpy as np
import pytest

from align3d_ad.data.formats import read_pcd, read_ply, write_pcd, write_ply
from align3d_ad.data.io import load_point_cloud
from align3d_ad.errors import DatasetFormatError

# The header Open3D/PCL write, as Real3D-AD's PCDs start (DATASETS.md section 3.2).
REAL3D_HEADER = (
    "# .PCD v0.7 - Point Cloud Data file format\n"
    "VERSION 0.7\n"
    "FIELDS x y z\n"
    "SIZE 4 4 4\n"
    "TYPE F F F\n"
    "COUNT 1 1 1\n"
    "WIDTH {n}\n"
    "HEIGHT 1\n"
    "VIEWPOINT 0 0 0 1 0 0 0\n"
    "POINTS {n}\n"
    "DATA {data}\n"
)


@pytest.fixture
def cloud() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(7, 3)) * 10).astype(np.float32)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_write_pcd_round_trips_every_encoding(tmp_path, cloud, encoding):
    rng = np.random.default_rng(1)
    fields = {
        "intensity": rng.random(7).astype(np.float32),
        "normal": rng.normal(size=(7, 3)),  # float64, COUNT 3
        "ring": rng.integers(0, 255, 7).astype(np.uint8),
        "stamp": rng.integers(-(2**40), 2**40, 7),  # int64, SIZE 8
        "label": np.array([0, 1, 0, 0, 1, 1, 0], dtype=bool),
    }
    path = tmp_path / f"c_{encoding}.pcd"
    write_pcd(path, cloud, fields=fields, encoding=encoding)
    got = read_pcd(path)
    assert list(got) == ["x", "y", "z", *fields]
    np.testing.assert_array_equal(np.stack([got["x"], got["y"], got["z"]], 1), cloud)
    assert got["x"].dtype == np.float32
    for name, values in fields.items():
        expected = values.astype(np.uint8) if values.dtype == bool else values
        assert got[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(got[name], expected)
    assert f"DATA {encoding}\n".encode() in path.read_bytes()
    assert list(tmp_path.iterdir()) == [path]  # atomic write left no temporary file


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_files_agree_with_pypcd4(tmp_path, cloud, encoding):
    pypcd4 = pytest.importorskip("pypcd4")
    values = np.concatenate([cloud, np.arange(7, dtype=np.float32)[:, None] / 3], axis=1)
    theirs = pypcd4.PointCloud.from_xyzi_points(values)
    theirs.save(tmp_path / "theirs.pcd", encoding=pypcd4.Encoding(encoding))
    got = read_pcd(tmp_path / "theirs.pcd")
    np.testing.assert_array_equal(np.stack(list(got.values()), axis=1), values)
    write_pcd(tmp_path / "ours.pcd", cloud, fields={"intensity": values[:, 3]}, encoding=encoding)
    back = pypcd4.PointCloud.from_path(tmp_path / "ours.pcd").numpy()
    np.testing.assert_array_equal(back, values)


def test_read_pcd_real3d_ascii_header_by_hand(tmp_path):
    text = REAL3D_HEADER.format(n=3, data="ascii") + "1.5 -2 3e-1\n0.25  4\t5\n-7 8 9.125\n"
    path = tmp_path / "705_bulge.pcd"
    path.write_bytes(text.encode())
    got = read_pcd(path)
    np.testing.assert_array_equal(got["x"], np.float32([1.5, 0.25, -7]))
    np.testing.assert_array_equal(got["z"], np.float32([0.3, 5, 9.125]))
    sample = load_point_cloud(path, category="chicken", label=1)
    assert sample.num_points == 3 and sample.category == "chicken" and sample.label == 1
    assert sample.colors is None and sample.point_labels is None and not sample.is_organised


def test_read_pcd_real3d_binary_header_by_hand(tmp_path, cloud):
    path = tmp_path / "1_template.pcd"
    path.write_bytes(REAL3D_HEADER.format(n=7, data="binary").encode() + cloud.tobytes())
    sample = load_point_cloud(path)
    np.testing.assert_array_equal(sample.points, cloud)
    assert sample.source == path and sample.meta["num_dropped"] == 0


def test_read_pcd_float64_size8_with_padding_by_hand(tmp_path):
    xyz = np.array([[1 + 1e-12, 2.0, 3.0], [4.0, 5.0, 6 - 1e-13]])
    header = (
        "VERSION .7\nFIELDS x y z _ intensity\nSIZE 8 8 8 2 4\nTYPE F F F U F\n"
        "COUNT 1 1 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA binary\n"
    )
    rows = b"".join(struct.pack("<3dHf", *p, 0xBEEF, 0.5 * i) for i, p in enumerate(xyz))
    path = tmp_path / "f64.pcd"
    path.write_bytes(header.encode() + rows)
    got = read_pcd(path)
    assert list(got) == ["x", "y", "z", "intensity"]  # padding dropped
    assert got["x"].dtype == np.float64
    np.testing.assert_array_equal(np.stack([got["x"], got["y"], got["z"]], 1), xyz)
    np.testing.assert_array_equal(got["intensity"], np.float32([0.0, 0.5]))


def test_read_pcd_binary_compressed_is_field_major_by_hand(tmp_path):
    # PCL layout: all x, all y, all z, then normal as (N, 2); written without our encoder.
    x, y, z = np.float32([1, 2, 3]), np.float32([4, 5, 6]), np.float32([7, 8, 9])
    normal = np.float64([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    raw = x.tobytes() + y.tobytes() + z.tobytes() + normal.tobytes()
    packed = lzf.compress(raw, 2 * len(raw))
    header = (
        "VERSION 0.7\nFIELDS x y z normal\nSIZE 4 4 4 8\nTYPE F F F F\nCOUNT 1 1 1 2\n"
        "WIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary_compressed\n"
    )
    path = tmp_path / "c.pcd"
    path.write_bytes(header.encode() + struct.pack("<II", len(packed), len(raw)) + packed)
    got = read_pcd(path)
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["normal"], normal)


def test_load_pcd_organised_keeps_grid_and_decodes_packed_rgb(tmp_path):
    xyz = np.arange(1, 19, dtype=np.float32).reshape(6, 3)
    xyz[2] = np.nan  # PCL marks missing points of organised clouds with NaN
    rgb = np.array([0xFF0000, 0x00FF00, 0, 0x0000FF, 0x102030, 0xFFFFFF], np.uint32)
    header = (
        "VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        "WIDTH 3\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 6\nDATA binary\n"
    )
    body = np.concatenate([xyz, rgb.view(np.float32)[:, None]], axis=1).tobytes()
    path = tmp_path / "organised.pcd"
    path.write_bytes(header.encode() + body)
    sample = load_point_cloud(path)
    assert sample.grid_shape == (2, 3)
    np.testing.assert_array_equal(sample.grid_index, [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(sample.points, xyz[[0, 1, 3, 4, 5]])
    expected = np.float32([[255, 0, 0], [0, 255, 0], [0, 0, 255], [16, 32, 48], [255] * 3]) / 255
    np.testing.assert_allclose(sample.colors, expected, rtol=0, atol=1e-7)
    assert sample.meta["num_dropped"] == 1


def test_write_pcd_ascii_keeps_packed_rgb_bits(tmp_path, cloud):
    rgb = np.array([0x00FF8001] * 7, np.uint32).view(np.float32)  # a NaN-free but odd float
    write_pcd(tmp_path / "a.pcd", cloud, fields={"rgb": rgb}, encoding="ascii")
    assert b"16744449" in (tmp_path / "a.pcd").read_bytes()  # PCL writes rgb as an integer
    np.testing.assert_array_equal(read_pcd(tmp_path / "a.pcd")["rgb"].view(np.uint32), 0xFF8001)


@pytest.mark.parametrize("binary", [True, False])
def test_write_ply_round_trips_colours_and_fields(tmp_path, cloud, binary):
    colors = np.linspace(0, 1, 21, dtype=np.float32).reshape(7, 3)
    score = np.float32([0.0, 0.125, 1e-7, 3.5, -2.0, 1e6, 0.3333333])
    path = tmp_path / "scores.ply"
    write_ply(path, cloud, colors=colors, fields={"anomaly_score": score}, binary=binary)
    got = read_ply(path)
    assert list(got) == ["x", "y", "z", "red", "green", "blue", "anomaly_score"]
    assert got["red"].dtype == np.uint8 and got["anomaly_score"].dtype == np.float32
    np.testing.assert_array_equal(got["anomaly_score"], score)
    rgb8 = np.rint(colors * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.stack([got["red"], got["green"], got["blue"]], 1), rgb8)
    sample = load_point_cloud(path)
    np.testing.assert_array_equal(sample.points, cloud)
    np.testing.assert_array_equal(sample.colors, rgb8.astype(np.float32) / 255)
    np.testing.assert_array_equal(sample.meta["fields"]["anomaly_score"], score)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert ("binary_little_endian" if binary else "format ascii") in header
    assert "property uchar red" in header and "property float anomaly_score" in header


def test_read_ply_big_endian_with_faces_by_hand(tmp_path):
    header = (
        "ply\nformat binary_big_endian 1.0\ncomment made by hand\nelement vertex 2\n"
        "property double x\nproperty double y\nproperty double z\nproperty int label\n"
        "property ushort red\nproperty ushort green\nproperty ushort blue\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = struct.pack(">3di3H", 1.25, -2.0, 3.0, 1, 65535, 0, 0)
    body += struct.pack(">3di3H", 4.0, 5.0, 6.5, 0, 0, 65535, 0)
    body += struct.pack(">B3i", 3, 0, 1, 1)
    path = tmp_path / "be.ply"
    path.write_bytes(header.encode() + body)
    got = read_ply(path)
    assert got["x"].dtype == np.float64 and got["label"].dtype == np.int32
    np.testing.assert_array_equal(got["z"], [3.0, 6.5])
    sample = load_point_cloud(path)
    np.testing.assert_array_equal(sample.point_labels, [True, False])
    np.testing.assert_array_equal(sample.colors, [[1, 0, 0], [0, 1, 0]])  # ushort / 65535
    assert "fields" not in sample.meta  # label and colours consumed


def test_read_ply_ascii_skips_element_before_vertex(tmp_path):
    text = (
        "ply\r\nformat ascii 1.0\r\nelement camera 1\r\nproperty float fov\r\n"
        "element vertex 2\r\nproperty float x\r\nproperty float y\r\nproperty float z\r\n"
        "end_header\r\n60\r\n1 2 3\r\n4 5 6\r\n"
    )
    path = tmp_path / "a.ply"
    path.write_bytes(text.encode())
    np.testing.assert_array_equal(load_point_cloud(path).points, [[1, 2, 3], [4, 5, 6]])


def test_read_ply_binary_skips_scalar_element_before_vertex(tmp_path):
    head = "ply\nformat binary_little_endian 1.0\nelement camera 2\nproperty double fov\n"
    vertex = "element vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    body = struct.pack("<2d", 60.0, 45.0) + np.float32([[1, 2, 3], [4, 5, 6]]).tobytes()
    (tmp_path / "cam.ply").write_bytes((head + vertex).encode() + body)
    np.testing.assert_array_equal(read_ply(tmp_path / "cam.ply")["y"], [2, 5])
    listed = head.replace("property double fov", "property list uchar int ids")
    (tmp_path / "list.ply").write_bytes((listed + vertex).encode() + body)
    with pytest.raises(DatasetFormatError, match=r"list\.ply: .*'camera' before 'vertex'"):
        read_ply(tmp_path / "list.ply")


def test_pcd_bad_inputs_raise_dataset_format_error(tmp_path, cloud):
    cases = {
        "truncated.pcd": REAL3D_HEADER.format(n=7, data="binary").encode() + cloud.tobytes()[:-5],
        "noxyz.pcd": b"VERSION 0.7\nFIELDS a b\nSIZE 4 4\nTYPE F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2\n",
        "garbage.pcd": REAL3D_HEADER.format(n=2, data="ascii").encode() + b"1 2 3\n4 five 6\n",
        "short.pcd": REAL3D_HEADER.format(n=3, data="ascii").encode() + b"1 2 3\n4 5 6\n",
        "notpcd.pcd": b"\x00\x01\x02binary junk without a header" * 10,
        "badtype.pcd": b"FIELDS x y z\nSIZE 4 4 3\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2 3\n",
        "empty.pcd": b"",
    }
    write_pcd(tmp_path / "full.pcd", cloud, encoding="binary_compressed")
    cases["cut.pcd"] = (tmp_path / "full.pcd").read_bytes()[:-10]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetFormatError, match=name.replace(".", r"\.")):
            read_pcd(tmp_path / name)
    with pytest.raises(DatasetFormatError, match=r"no x/y/z fields \(fields: a b\)"):
        read_pcd(tmp_path / "noxyz.pcd")
    with pytest.raises(DatasetFormatError, match="truncated"):
        load_point_cloud(tmp_path / "truncated.pcd")


def test_ply_bad_inputs_raise_dataset_format_error(tmp_path, cloud):
    write_ply(tmp_path / "ok.ply", cloud)
    good = (tmp_path / "ok.ply").read_bytes()
    cases = {
        "cut.ply": good[:-3],
        "noxyz.ply": b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n",
        "noheader.ply": b"ply\nformat ascii 1.0\nelement vertex 1\n",
        "badfmt.ply": b"ply\nformat binary_middle_endian 1.0\nend_header\n",
        "garbage.ply": good.split(b"end_header")[0].replace(b"binary_little_endian", b"ascii")
        + b"end_header\n1 2 3\nfoo bar baz\n",
        "nothing.ply": b"hello",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetFormatError, match=name.replace(".", r"\.")):
            load_point_cloud(tmp_path / name)


def test_write_rejects_bad_arguments_without_touching_target(tmp_path, cloud):
    path = tmp_path / "keep.ply"
    write_ply(path, cloud)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="colors must be uint8 or float in"):
        write_ply(path, cloud, colors=np.full((7, 3), 2.0))
    with pytest.raises(ValueError, match="field name"):
        write_pcd(tmp_path / "a.pcd", cloud, fields={"bad name": np.zeros(7)})
    with pytest.raises(ValueError, match="encoding must be one of"):
        write_pcd(tmp_path / "a.pcd", cloud, encoding="zip")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
