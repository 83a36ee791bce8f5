"""PNG view grids and painting point scores into views."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from align3d_ad.errors import ShapeError
from align3d_ad.render import RenderSettings, render_batch
from align3d_ad.viz import compose_views, point_scores_to_view_heat, save_view_grid
from align3d_ad.viz.grid import GAP, MASK_COLOR, TITLE_HEIGHT


@pytest.mark.parametrize(
    ("views", "columns", "titles"), [(9, None, True), (5, 2, False), (1, None, False)]
)
def test_save_view_grid_writes_png_of_documented_size(tmp_path, views, columns, titles):
    s = 20
    images = torch.rand(views, 3, s, s)
    path = save_view_grid(
        tmp_path / "g.png",
        images,
        columns=columns,
        titles=[f"v{i}" for i in range(views)] if titles else None,
    )
    cols = columns or int(np.ceil(np.sqrt(views)))
    rows = int(np.ceil(views / cols))
    title = TITLE_HEIGHT if titles else 0
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (cols * s + (cols - 1) * GAP, rows * (s + title) + (rows - 1) * GAP)
        pixels = np.asarray(im)
    # first tile is placed unchanged (8-bit rounding)
    np.testing.assert_allclose(
        pixels[title : title + s, :s] / 255.0,
        images[0].permute(1, 2, 0).numpy(),
        atol=0.5 / 255 + 1e-6,
    )


def test_compose_views_overlays_heat_and_mask_outline():
    images = torch.full((1, 3, 8, 8), 0.5)
    heat = torch.full((1, 8, 8), torch.nan)
    heat[0, 2, 2], heat[0, 2, 3] = 0.0, 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 4:7, 4:7] = True
    rgb = compose_views(images, heat=heat, mask=mask, vmin=0.0, vmax=1.0)
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(rgb[0, 2, 2], 0.25 + 0.5 * np.array(jet(0.0)[:3]))
    np.testing.assert_allclose(rgb[0, 2, 3], 0.25 + 0.5 * np.array(jet(1.0)[:3]))
    np.testing.assert_allclose(rgb[0, 0, 0], [0.5, 0.5, 0.5])  # NaN heat: untouched
    outline = np.zeros((8, 8), bool)
    outline[4:7, 4:7] = True
    outline[5, 5] = False  # the interior pixel of the 3 x 3 mask is not on the outline
    assert (np.all(rgb[0] == np.array(MASK_COLOR), axis=-1) == outline).all()


def test_save_view_grid_rejects_bad_shapes(tmp_path):
    with pytest.raises(ShapeError, match="images"):
        save_view_grid(tmp_path / "x.png", torch.rand(2, 3, 8, 9))
    with pytest.raises(ShapeError, match="heat"):
        save_view_grid(tmp_path / "x.png", torch.rand(2, 3, 8, 8), heat=torch.rand(2, 4, 4))


def test_point_scores_to_view_heat_paints_the_visible_point_score():
    pts = [torch.randn(400, 3), torch.rand(150, 3)]
    rendering = render_batch(pts, "real3d", RenderSettings(image_size=24))
    scores = [torch.arange(400, dtype=torch.float32), 1000 + torch.arange(150, dtype=torch.float32)]
    heat = point_scores_to_view_heat(rendering, scores)
    idx = rendering.index_map
    assert torch.isnan(heat[idx < 0]).all()
    torch.testing.assert_close(heat[0][idx[0] >= 0], idx[0][idx[0] >= 0].float())
    torch.testing.assert_close(heat[1][idx[1] >= 0], 1000 + idx[1][idx[1] >= 0].float())
    packed = point_scores_to_view_heat(rendering, torch.cat(scores))
    assert torch.equal(packed.nan_to_num(-1), heat.nan_to_num(-1))
    with pytest.raises(ShapeError, match="one value per point"):
        point_scores_to_view_heat(rendering, torch.zeros(3))
