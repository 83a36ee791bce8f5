"""What report.html costs: file size, write time, and in headless Chromium the time to open (until
the 3D viewer has drawn), to recolour, to show the predicted mask, to switch sample and to redraw
the scene from a new camera (an orbit step), for N samples x P points at several display caps.

    python benchmarks/html_report.py --samples 20 --points 100000 --caps 100000 50000 30000 10000

Needs chromium + chromium-driver and selenium (as the browser tests). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from align3d_ad.viz.cloud_view import encode_cloud  # noqa: E402
from align3d_ad.viz.gallery import GalleryItem  # noqa: E402
from align3d_ad.viz.html_report import ReportHeader, write_html_report  # noqa: E402
from browser_helpers import open_report, severe_logs, start_browser  # noqa: E402

#: In-page timing of one UI action: run ``ACTION``, wait for the viewer's next draw, return ms.
TIMED = """
const done = arguments[arguments.length - 1], before = Number(document.body.dataset.viewerDraws);
const t0 = performance.now();
ACTION;
(function wait() {
  if (Number(document.body.dataset.viewerDraws) > before) done(performance.now() - t0);
  else requestAnimationFrame(wait);
})();
"""
ORBIT = """
const done = arguments[arguments.length - 1], t0 = performance.now(); let p = Promise.resolve();
for (let i = 0; i < 10; i++) {
  const a = i * 0.3;
  p = p.then(() => Plotly.relayout('v-plot', {'scene.camera.eye': {x: 2 * Math.cos(a), y: 2 * Math.sin(a), z: 1}}));
}
p.then(() => done((performance.now() - t0) / 10));
"""


def sample_cloud(points: int, seed: int) -> tuple[np.ndarray, dict, np.ndarray]:
    """A bumpy disc of ``points`` points with one hot spot, and three score channels."""
    rng = np.random.default_rng(seed)
    r, t = np.sqrt(rng.random(points)), rng.random(points) * 2 * np.pi
    x, y = r * np.cos(t), r * np.sin(t)
    z = 0.05 * np.sin(6 * x) * np.cos(5 * y)
    hot = np.hypot(x - 0.4, y + 0.2) < 0.15
    fused = np.clip(0.2 + 0.6 * hot + 0.05 * rng.standard_normal(points), 0, 1)
    return (np.stack([x, y, z], 1), {"fused": fused, "aligned": fused * 0.9, "rendering": fused * 1.1},
            hot)  # fmt: skip


def view_png(points: int) -> bytes:
    """A real view grid (9 views of 336 px, heat overlay) of a ``points``-point height field."""
    import torch

    from align3d_ad.data import PointCloudSample
    from align3d_ad.render import RenderSettings, render_samples
    from align3d_ad.viz.grid import save_view_grid
    from align3d_ad.viz.heat import point_scores_to_view_heat

    side = int(np.sqrt(points))
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    xyz = np.stack([u, v, 1.0 - 0.2 * np.exp(-(u**2 + v**2))], -1).astype(np.float32)
    sample = PointCloudSample.from_grid(xyz, mask=np.hypot(u - 0.4, v + 0.2) < 0.15)
    rendering = render_samples([sample], "mvtec3d", RenderSettings(image_size=336))
    scores = torch.as_tensor(np.exp(-((u - 0.4) ** 2 + (v + 0.2) ** 2) / 0.05).ravel())
    heat = point_scores_to_view_heat(rendering, [scores.float()])[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_view_grid(Path(tmp) / "v.png", rendering.images[0], heat=heat,
                              mask=rendering.gt_masks[0], titles=list(rendering.preset.labels))  # fmt: skip
        return path.read_bytes()


def measure(n_samples: int, n_points: int, cap: int, folder: Path, png: bytes) -> dict:
    start = time.perf_counter()
    items = []
    for i in range(n_samples):
        pts, channels, hot = sample_cloud(n_points, i)
        items.append(GalleryItem(f"s{i:02d}", f"cat{i % 5}", "best detection", 1, 1.0,
                                 encode_cloud(pts, channels, gt=hot, cap=cap), png))  # fmt: skip
    path = write_html_report(folder / f"report_{cap}.html", ReportHeader("benchmark", "0"), gallery=items)
    write_s = time.perf_counter() - start
    driver = start_browser(1280, 1000)
    try:
        t0 = time.perf_counter()
        open_report(driver, path, timeout=600)
        open_s = time.perf_counter() - t0
        ready_ms = float(driver.execute_script("return document.body.dataset.readyMs"))
        colour, mask, switch = [], [], []
        for value, sample in (("aligned", "1"), ("rendering", "2"), ("fused", "3")):  # median of 3
            colour.append(driver.execute_async_script(TIMED.replace("ACTION", (
                f"const c = document.getElementById('v-color'); c.value = '{value}'; "
                "c.dispatchEvent(new Event('change'))"))))  # fmt: skip
            for _ in range(2):  # on, then off again
                mask.append(driver.execute_async_script(TIMED.replace("ACTION", (
                    "document.getElementById('v-mask').click()"))))  # fmt: skip
            switch.append(driver.execute_async_script(TIMED.replace("ACTION", (
                f"const s = document.getElementById('v-sample'); s.value = '{sample}'; "
                "s.dispatchEvent(new Event('change'))"))))  # fmt: skip
        colour, mask, switch = (float(np.median(v)) for v in (colour, mask, switch))
        orbit = driver.execute_async_script(ORBIT)
        heap = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : 0")
        errors = severe_logs(driver)
    finally:
        driver.quit()
    return {"cap": cap, "shown": min(cap, n_points), "mb": path.stat().st_size / 1e6, "write_s": write_s,
            "open_s": open_s, "ready_ms": ready_ms, "colour_ms": colour, "mask_ms": mask,
            "switch_ms": switch, "orbit_ms": orbit, "heap_mb": heap / 1e6, "errors": len(errors)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--caps", type=int, nargs="+", default=[100_000, 50_000, 30_000, 10_000])
    args = parser.parse_args()
    png = view_png(args.points)
    print(f"{args.samples} samples x {args.points:,} points; view grid PNG {len(png) / 1e3:.0f} kB")
    print("| cap | shown/sample | file (MB) | write (s) | open (s) | viewer drawn (ms after start) "
          "| recolour (ms) | mask (ms) | switch sample (ms) | camera relayout (ms) | JS heap (MB) | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for cap in args.caps:
            r = measure(args.samples, args.points, cap, Path(tmp), png)
            print(f"| {r['cap']:,} | {r['shown']:,} | {r['mb']:.1f} | {r['write_s']:.1f} | {r['open_s']:.1f} "
                  f"| {r['ready_ms']:.0f} | {r['colour_ms']:.0f} | {r['mask_ms']:.0f} | {r['switch_ms']:.0f} "
                  f"| {r['orbit_ms']:.0f} | {r['heap_mb']:.0f} | {r['errors']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
