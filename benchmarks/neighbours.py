"""scipy against torch for the three neighbour searches of the scoring path, in one run.

The three uses (``render/knn.py`` chooses scipy on the CPU, torch on any other device):

* ``point spacing``: :func:`point_spacing` (a kNN on a 4096-point order-free subsample);
* ``smoothing``: :func:`smooth_point_scores` with the default kernel (k = 16 self-kNN in Z order
  and the 16 ``embedding_bag`` passes, which both paths share);
* ``hidden fill``: :func:`hidden_neighbours` of a rendering with 9 views (``mvtec3d``) of a closed
  bumpy sphere, whose underside no view sees (the far path runs: graph, seeds, relaxation).

Each is timed with ``ALIGN3D_NEIGHBOURS`` forced to scipy and to torch (best of ``--repeats``;
the rendering is made once, its cached fill dropped before each run), on the CPU and, with
``--device cuda``, torch on the GPU too. Timings only; the agreement is in the tests
(``tests/render/test_render_neighbour_paths.py``).

Usage::

    python benchmarks/neighbours.py --sizes 100000 1000000 --threads 2
    python benchmarks/neighbours.py --sizes 100000 --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from align3d_ad.render import (
    RenderSettings,
    hidden_neighbours,
    point_spacing,
    render_batch,
    smooth_point_scores,
)
from align3d_ad.render.knn import neighbours_backend


def bumpy_sphere(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` points on a closed bumpy sphere, in no spatial order (float32)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p *= (1 + 0.05 * np.sin(5 * p[:, :1]) * np.cos(4 * p[:, 1:2]))
    return torch.from_numpy(p.astype(np.float32))


def _best(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def run(n: int, backend: str, device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds of each use at ``n`` points with ``backend`` forced, points on ``device``."""
    points = bumpy_sphere(n).to(device)
    scores = torch.rand(n, 2, device=device)
    with neighbours_backend(backend):
        rendering = render_batch([points], "mvtec3d", RenderSettings(image_size=336))
        hidden = int((~rendering.visible.any(dim=1)).sum())

        def fill() -> None:
            rendering.cache.pop(("hidden_neighbours", 8), None)
            hidden_neighbours(rendering, 8)

        return {
            "point spacing": _best(lambda: point_spacing(points), repeats, device),
            "smoothing": _best(lambda: smooth_point_scores(points, scores), repeats, device),
            "hidden fill": _best(fill, repeats, device),
            "hidden": hidden,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add torch on the GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    rows = [("scipy", cpu), ("torch", cpu)]
    if args.device != "cpu":
        rows.append(("torch", torch.device(args.device)))
    print(f"threads {args.threads}, repeats {args.repeats}, torch {torch.__version__}")
    print("| points | hidden | use | " + " | ".join(f"{b} {d.type} (s)" for b, d in rows)
          + " | torch cpu / scipy |")  # fmt: skip
    print("|---:|---:|---|" + "---:|" * (len(rows) + 1))
    for n in args.sizes:
        results = [run(n, backend, device, args.repeats) for backend, device in rows]
        for use in ("point spacing", "smoothing", "hidden fill"):
            cells = " | ".join(f"{r[use]:.3f}" for r in results)
            ratio = results[1][use] / results[0][use]
            print(f"| {n:,} | {results[0]['hidden']:,} | {use} | {cells} | {ratio:.1f} |", flush=True)


if __name__ == "__main__":
    main()
