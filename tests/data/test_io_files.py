"""TIFF, numpy, text and image I/O and the ``load_point_cloud`` dispatch."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from align3d_ad.data.formats import read_image, read_tiff_xyz, read_xyz_txt, write_tiff_xyz
from align3d_ad.data.io import SUPPORTED_SUFFIXES, load_point_cloud
from align3d_ad.errors import DatasetFormatError, ShapeError


def _png(pixels: np.ndarray, color_type: int) -> bytes:
    """A minimal 16-bit PNG written by hand (filter 0 on every row), independent of Pillow."""
    h, w = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def grid() -> np.ndarray:
    """A non-square (H=4, W=5) organised cloud with missing cells (zeros and one NaN)."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.05, 0.05, size=(4, 5, 3)).astype(np.float32)
    xyz[..., 2] += 0.4
    xyz[0, 0] = 0.0
    xyz[2, 3] = 0.0
    xyz[3, 1] = [np.nan, 0.1, 0.2]
    return xyz


def test_tiff_round_trip_drops_missing_cells_and_keeps_grid(tmp_path, grid):
    path = tmp_path / "000.tiff"
    write_tiff_xyz(path, grid)
    back = read_tiff_xyz(path)
    assert back.shape == (4, 5, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back, grid)  # NaN == NaN in assert_array_equal
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    sample = load_point_cloud(path, category="tire", sample_id="test/cut/000", label=1)
    missing = {0 * 5 + 0, 2 * 5 + 3, 3 * 5 + 1}
    expected_index = [i for i in range(20) if i not in missing]
    assert sample.grid_shape == (4, 5)
    np.testing.assert_array_equal(sample.grid_index, expected_index)
    np.testing.assert_array_equal(sample.points, grid.reshape(-1, 3)[expected_index])
    np.testing.assert_array_equal(sample.to_grid(sample.points)[1, 2], grid[1, 2])
    assert sample.meta["num_dropped"] == 3 and sample.sample_id == "test/cut/000"


def test_load_tiff_takes_pixel_aligned_colours_and_mask(tmp_path, grid):
    write_tiff_xyz(tmp_path / "x.tif", grid)
    rgb = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    mask = np.zeros((4, 5), np.uint8)
    mask[1, 1] = 254  # MVTec class-coded gt values are not 255
    sample = load_point_cloud(tmp_path / "x.tif", colors=rgb, point_labels=mask)
    index = sample.grid_index
    np.testing.assert_array_equal(sample.colors, rgb.reshape(-1, 3)[index] / np.float32(255))
    np.testing.assert_array_equal(sample.point_labels, (mask.reshape(-1) > 0)[index])
    assert sample.point_labels.sum() == 1
    with pytest.raises(ShapeError, match="colors must have one entry per point or grid cell"):
        load_point_cloud(tmp_path / "x.tif", colors=rgb[:2])
    with pytest.raises(TypeError, match="grid_index"):
        load_point_cloud(tmp_path / "x.tif", grid_index=np.arange(20))


def test_read_tiff_transposes_planar_and_rejects_non_xyz(tmp_path, grid):
    planar = np.ascontiguousarray(np.moveaxis(grid, -1, 0))  # (3, H, W)
    tifffile.imwrite(tmp_path / "planar.tiff", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_tiff_xyz(tmp_path / "planar.tiff"), grid)
    tifffile.imwrite(tmp_path / "gray.tiff", grid[..., 0])
    tifffile.imwrite(tmp_path / "int.tiff", np.zeros((4, 5, 3), np.uint16), photometric="rgb")
    for name in ("gray.tiff", "int.tiff"):
        with pytest.raises(DatasetFormatError, match=rf"{name}.*float \(H, W, 3\)"):
            read_tiff_xyz(tmp_path / name)


def test_load_npy_and_npz_variants(tmp_path, grid):
    pts = np.array([[1, 2, 3], [np.nan, 0, 0], [4, 5, 6]], np.float64)  # (0, 0, 0) would stay
    rgb = np.array([[255, 0, 0], [1, 2, 3], [0, 0, 255]], np.float64)
    np.save(tmp_path / "a.npy", pts)
    np.save(tmp_path / "b.npy", np.concatenate([pts, rgb], axis=1))
    np.save(tmp_path / "c.npy", grid)
    np.savez(tmp_path / "d.npz", xyz=pts, colors=rgb.astype(np.uint8), labels=[0.0, 1.0, 0.9])
    a, b, c, d = (load_point_cloud(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy", "d.npz"))
    for sample in (a, b, d):
        np.testing.assert_array_equal(sample.points, pts[[0, 2]])
        assert sample.grid_shape is None and sample.meta["num_dropped"] == 1
    assert a.colors is None
    for sample in (b, d):
        np.testing.assert_array_equal(sample.colors, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(d.point_labels, [False, True])
    assert c.grid_shape == (4, 5) and c.num_points == 17


def test_read_xyz_txt_with_labels_and_separators(tmp_path):
    (tmp_path / "705_bulge.txt").write_text("1 2 3 0\n4.5 5 6 1\n-1 0 2 0.0\n")
    (tmp_path / "shapenet.txt").write_text("1,2,3,1\n4,\t5,6,0\n")
    (tmp_path / "plain.xyz").write_text("# comment\n1\t2\t3\n4 5 6\n")
    points, labels = read_xyz_txt(tmp_path / "705_bulge.txt")
    assert points.dtype == np.float32
    np.testing.assert_array_equal(points, [[1, 2, 3], [4.5, 5, 6], [-1, 0, 2]])
    np.testing.assert_array_equal(labels, [False, True, False])
    _, labels = read_xyz_txt(tmp_path / "shapenet.txt")
    np.testing.assert_array_equal(labels, [True, False])
    points, labels = read_xyz_txt(tmp_path / "plain.xyz")
    assert labels is None and points.shape == (2, 3)
    sample = load_point_cloud(tmp_path / "705_bulge.txt")
    np.testing.assert_array_equal(sample.point_labels, [False, True, False])


def test_read_image_keeps_16_bit_exact(tmp_path):
    depth = np.array([[0, 255, 256], [1000, 40000, 65535]], np.uint16)
    (tmp_path / "000_depth.png").write_bytes(_png(depth, color_type=0))
    got = read_image(tmp_path / "000_depth.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, depth)
    Image.fromarray(depth).save(tmp_path / "pil.png")
    np.testing.assert_array_equal(read_image(tmp_path / "pil.png"), depth)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    got = read_image(tmp_path / "rgb.png")
    assert got.dtype == np.uint8 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got, rgb)


def test_read_image_rejects_16_bit_colour_and_corrupt(tmp_path):
    (tmp_path / "rgb16.png").write_bytes(_png(np.ones((2, 2, 3), np.uint16), color_type=2))
    with pytest.raises(DatasetFormatError, match=r"rgb16\.png.*16-bit colour"):
        read_image(tmp_path / "rgb16.png")
    (tmp_path / "cut.png").write_bytes(_png(np.ones((9, 9), np.uint16), color_type=0)[:40])
    with pytest.raises(DatasetFormatError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_load_point_cloud_missing_and_empty_files(tmp_path, suffix):
    with pytest.raises(DatasetFormatError, match=rf"nothere{suffix}: file does not exist"):
        load_point_cloud(tmp_path / f"nothere{suffix}")
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=rf"empty{suffix}: file is empty"):
        load_point_cloud(tmp_path / f"empty{suffix}")


def test_load_point_cloud_bad_content_names_the_file(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((5, 4)))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.savez(tmp_path / "keys.npz", foo=np.zeros((2, 3)))
    np.savez(tmp_path / "len.npz", points=np.ones((2, 3)), colors=np.ones((3, 3)))
    (tmp_path / "garbage.txt").write_text("1 2 3\nhello world foo\n")
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    (tmp_path / "cols.txt").write_text("1 2 3 4 5\n")
    (tmp_path / "junk.tiff").write_bytes(b"II*\x00garbage" * 3)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "junk.npz").write_bytes(b"PK not a zip")
    (tmp_path / "cloud.foo").write_bytes(b"1 2 3")
    names = [p.name for p in sorted(tmp_path.iterdir())]
    for name in names:
        with pytest.raises(DatasetFormatError, match=name.replace(".", r"\.")):
            load_point_cloud(tmp_path / name)
    with pytest.raises(DatasetFormatError, match=r"unsupported point-cloud suffix '\.foo'"):
        load_point_cloud(tmp_path / "cloud.foo")
    (tmp_path / "folder.ply").mkdir()
    with pytest.raises(DatasetFormatError, match=r"folder\.ply: must be a file, got a directory"):
        load_point_cloud(tmp_path / "folder.ply")
