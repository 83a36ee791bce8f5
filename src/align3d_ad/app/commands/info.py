"""``align3d-ad info``: versions, devices, the configured backbone and whether its weights are here."""

from __future__ import annotations

import argparse
from typing import Any

from ...backbone import backbone_info
from ...config import Config
from ...model.checkpoint import backbone_spec, default_cache_dir
from ...versions import versions
from ..options import config_from_args
from ..output import print_json


def info_report(config: Config) -> dict[str, Any]:
    """Everything ``info`` prints, as a JSON-able dict. Never downloads anything."""
    report = backbone_info(backbone_spec(config.backbone))
    report["versions"] = versions()
    report["feature_cache"] = config.backbone.cache_dir or str(default_cache_dir())
    return report


def info_text(report: dict[str, Any]) -> str:
    """A few readable lines of :func:`info_report`."""
    v, b, w = report["versions"], report["backbone"], report["weights"]
    lines = [
        "align3d-ad " + v["align3d_ad"],
        "  " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "align3d_ad"),
        "devices: " + ", ".join(report["devices"]),
        f"backbone: {b['name']} (pretrained {b['pretrained']}, {b['image_size']} px, "
        f"quick_gelu {b['quick_gelu']}, {b['precision']})",
        f"weights: {'available' if w['available'] else 'NOT available'} - {w['detail']}",
    ]
    if not w["available"]:
        lines.append("how to provide them: " + report["how_to_provide_weights"])
    lines += [
        f"feature cache: {report['feature_cache']}",
        "known backbones: " + ", ".join(report["known_backbones"]),
        "without weights, `align3d-ad demo` and the tests use the tiny random model "
        "(tiny-clip); its numbers are not comparable with published results",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``info`` command."""
    report = info_report(config_from_args(args))
    if args.json:
        print_json(report)
    else:
        print(info_text(report))
    return 0
