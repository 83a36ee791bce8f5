"""report.html in a real browser (headless Chromium, network off): the viewer draws the scored
cloud where it projects, its controls recolour it, and the page logs no error."""

from __future__ import annotations

import numpy as np
import pytest

from align3d_ad.viz.cloud_view import encode_cloud
from align3d_ad.viz.gallery import GalleryItem
from align3d_ad.viz.html_report import ReportHeader, write_html_report
from browser_helpers import (
    draws,
    missing,
    open_report,
    screenshot,
    severe_logs,
    start_browser,
    wait_draw,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

#: Plotly's Jet ends (the viewer's colour scale) and the ground-truth colours of report.js.
HOT, COLD = (128, 0, 0), (0, 0, 131)
GT_ON, GT_OFF = (255, 0, 255), (180, 180, 180)
MASK_ON, MASK_OFF = (230, 25, 75), (200, 200, 200)
#: The hot disc: centre (x, y) and radius on the plane [-1, 1]^2.
CENTRE, RADIUS = (0.5, 0.5), 0.2
TOP_VIEW = ("return Plotly.relayout('v-plot', {'scene.camera': {eye: {x: 0, y: 0, z: 2}, "
            "up: {x: 0, y: 1, z: 0}, center: {x: 0, y: 0, z: 0}, "
            "projection: {type: 'perspective'}}}).then(() => 1)")  # fmt: skip
# (perspective: plotly's orthographic camera draws nothing of a flat cloud seen along its normal;
# the plane is parallel to the image, so its projection is still a uniform scaling)


def _near(image: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(colour)).max(axis=-1) <= tol


def _plane() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.linspace(-1.0, 1.0, 160)
    x, y = np.meshgrid(g, g)
    points = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    hot = np.hypot(points[:, 0] - CENTRE[0], points[:, 1] - CENTRE[1]) < RADIUS
    return points, hot, points[:, 0]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The browser with a report of one plane, seen from above: fused score 1 on a disc (also
    the ground truth) and 0 elsewhere; the aligned branch rises along x."""
    points, hot, ramp = _plane()
    cloud = encode_cloud(points, {"fused": hot.astype(float), "aligned": ramp,
                                  "rendering": hot * 0.5}, gt=hot)  # fmt: skip
    item = GalleryItem("plane/hot", "plane", "best detection", 1, 1.0, cloud)
    path = write_html_report(tmp_path_factory.mktemp("html") / "report.html",
                             ReportHeader("browser test", "0"), gallery=[item])  # fmt: skip
    driver = start_browser()
    try:
        open_report(driver, path)
        driver.execute_script("const s = document.getElementById('v-size'); s.value = 6; "
                              "s.dispatchEvent(new Event('input'));")  # fmt: skip
        before = draws(driver)
        assert driver.execute_script(TOP_VIEW) == 1
        wait_draw(driver, before - 1)
        yield driver
    finally:
        driver.quit()


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    before = draws(driver)
    Select(driver.find_element("id", element_id)).select_by_value(value)
    wait_draw(driver, before)


def _plane_box(image: np.ndarray, colours) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (lo, hi) in (x, y) pixels of the pixels of ``colours`` left of the colour bar."""
    mask = np.zeros(image.shape[:2], bool)
    for c in colours:
        mask |= _near(image, c)
    mask[:, int(image.shape[1] * 0.85):] = False  # the colour bar
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min()]), np.array([xs.max(), ys.max()])


def _relative_centroid(image: np.ndarray, colour, lo, hi) -> np.ndarray:
    region = _near(image, colour)
    region[:, int(image.shape[1] * 0.85):] = False
    ys, xs = np.nonzero(region)
    return (np.array([xs.mean(), ys.mean()]) - lo) / (hi - lo)


def test_hot_spot_is_hot_where_it_projects_and_cold_elsewhere(page):
    image = screenshot(page, "v-plot")
    lo, hi = _plane_box(image, (HOT, COLD))
    assert (hi - lo).min() > 200, "the plane must fill much of the viewer"
    # top view, x right and y up: the disc at (0.5, 0.5) of [-1, 1]^2 lies at 3/4 across, 1/4 down
    centre = _relative_centroid(image, HOT, lo, hi)
    np.testing.assert_allclose(centre, [0.75, 0.25], atol=0.05)
    box = image[lo[1]:hi[1], lo[0]:hi[0]]
    hot, cold = _near(box, HOT).mean(), _near(box, COLD).mean()
    assert hot == pytest.approx(np.pi * RADIUS**2 / 4, rel=0.35)  # the disc's share of the plane
    assert cold > 0.85
    assert severe_logs(page) == []


def test_ground_truth_colouring_changes_those_pixels(page):
    before = screenshot(page, "v-plot")
    lo, hi = _plane_box(before, (HOT, COLD))
    _select(page, "v-color", "gt")
    after = screenshot(page, "v-plot")
    was_hot, was_cold = _near(before, HOT), _near(before, COLD)
    assert _near(after, GT_ON)[was_hot].mean() > 0.9  # the disc is now magenta
    assert _near(after, GT_OFF)[was_cold].mean() > 0.9  # the rest grey
    assert _near(after, HOT).sum() == 0 and _near(after, COLD).sum() == 0
    np.testing.assert_allclose(_relative_centroid(after, GT_ON, lo, hi), [0.75, 0.25], atol=0.05)
    _select(page, "v-color", "fused")
    assert severe_logs(page) == []


def test_threshold_slider_shows_the_predicted_mask(page):
    _select(page, "v-color", "aligned")  # a ramp along x: low on the left, high on the right
    ramp = screenshot(page, "v-plot")
    lo, hi = _plane_box(ramp, (HOT, COLD))
    assert _relative_centroid(ramp, HOT, lo, hi)[0] > 0.9 > 0.1 > _relative_centroid(ramp, COLD, lo, hi)[0]
    _select(page, "v-color", "fused")
    page.execute_script("const t = document.getElementById('v-thr'); t.value = t.max / 2; "
                        "t.dispatchEvent(new Event('input'));")  # fmt: skip
    before = draws(page)
    page.find_element("id", "v-mask").click()
    wait_draw(page, before)
    masked = screenshot(page, "v-plot")
    # fused = the hot disc (1) on 0: at threshold 0.5 the predicted mask is the disc
    np.testing.assert_allclose(_relative_centroid(masked, MASK_ON, lo, hi), [0.75, 0.25], atol=0.05)
    assert _near(masked, MASK_OFF).sum() > 10 * _near(masked, MASK_ON).sum()
    info = page.find_element("id", "v-info").text
    assert "100.0% of them in the ground truth" in info
    page.find_element("id", "v-mask").click()
    assert severe_logs(page) == []


def test_page_loaded_nothing_from_the_network(page):
    urls = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in urls if not u.startswith(("data:", "blob:"))] == []
    assert page.execute_script("return typeof Plotly") == "object"
