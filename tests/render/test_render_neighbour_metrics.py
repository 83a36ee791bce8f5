"""End to end: ``test`` on the synthetic benchmark gives the same metrics with either neighbour path."""

from __future__ import annotations

import math
import shutil

import numpy as np

from align3d_ad.app.cli import main
from align3d_ad.evaluate.tables import read_results
from align3d_ad.render import backproject
from align3d_ad.render.knn import BACKEND_ENV


def _numbers(doc, prefix=""):
    """Flat {path: value} of the numbers of a metrics document."""
    if isinstance(doc, dict):
        return {k: v for key, val in doc.items() for k, v in _numbers(val, f"{prefix}/{key}").items()}
    return {prefix: doc} if isinstance(doc, float) else {}


def test_metrics_are_identical_to_3_decimals_with_the_torch_path(
    monkeypatch, capsys, trained_run, synth_mvtec, feature_cache, tmp_path
):
    searches = {"scipy": 0, "torch": 0}
    for module, name, backend in ((backproject, "_hidden_neighbours_scipy", "scipy"),
                                  (backproject, "_hidden_neighbours_torch", "torch")):  # fmt: skip
        real = getattr(module, name)

        def counted(*args, _real=real, _backend=backend, **kwargs):
            searches[_backend] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    root = tmp_path / "data"  # cookie, two good and two cracked samples: the metrics are defined
    shutil.copytree(synth_mvtec / "cookie", root / "cookie")
    for folder in (root / "cookie" / "test").iterdir():
        if folder.name not in ("good", "crack"):
            shutil.rmtree(folder)
    docs = {}
    for backend in ("scipy", "torch"):
        monkeypatch.setenv(BACKEND_ENV, backend)
        out = tmp_path / backend
        assert main(["test", "--checkpoint", str(trained_run), "--dataset", "mvtec3d", "--root",
                     str(root), "--categories", "cookie", "--out", str(out), "--device",
                     "cpu", "--cache-dir", str(feature_cache), "--no-report", "--quiet"]) == 0  # fmt: skip
        docs[backend] = read_results(out / "metrics.json")
        scores = np.load(out / "scores" / "cookie.npz")
        docs[backend]["scores"] = {key: scores[key] for key in scores.files}
    capsys.readouterr()
    assert searches["scipy"] > 0 and searches["scipy"] == searches["torch"]
    a, b = _numbers(docs["scipy"]), _numbers(docs["torch"])
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        if math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            assert round(a[key], 3) == round(b[key], 3), (key, a[key], b[key])
    for key, value in docs["scipy"]["scores"].items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(docs["torch"]["scores"][key], value, atol=1e-4, err_msg=key)
