"""Run folders of trained models: written atomically each epoch, loaded without pickled code.

A run folder holds:

* ``head.safetensors``: the aligner and both prompt learners (tensors only);
* ``checkpoint.json``: everything needed to rebuild the detector (resolved config, backbone name
  and weights fingerprint, image size, layers, V-V start, training data, versions, seed, progress);
* ``state.pt``: the resume state (head, optimisers, progress), read with ``weights_only=True``.

Each is replaced atomically. ``state.pt`` alone drives ``--resume``; ``head.safetensors`` and
``checkpoint.json`` carry the same epoch counter, and a mismatch (a write interrupted between the
two) is reported instead of silently loading a head of another epoch. All three carry the
checkpoint format (:data:`FORMAT`); a file of a newer format, a damaged file, or tensors that do
not fit the head the config describes are refused with one line naming the file (docs/runs.md).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .._atomic import atomic_path, atomic_write_text
from .._version import __version__
from ..backbone import BackboneSpec, FeatureCache, PromptableTextEncoder, load_backbone
from ..backbone.encode import ViewEncoder
from ..backbone.loader import Backbone
from ..config import BackboneConfig, Config, config_from_dict
from ..errors import CheckpointMismatchError, ConfigError
from ..render import RenderSettings, ViewPreset, get_view_preset, view_preset_from_spec
from ..render.reference import ReferenceRenderSettings
from ..versions import versions
from .head import AnomalyHead

logger = logging.getLogger(__name__)

CHECKPOINT_JSON = "checkpoint.json"
HEAD_FILE = "head.safetensors"
STATE_FILE = "state.pt"
#: The checkpoint format this version writes, and the newest it reads.
FORMAT = 1
#: What a damaged file can raise when read.
_READ_ERRORS = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError,
                zipfile.BadZipFile)  # fmt: skip


def backbone_spec(config: BackboneConfig, *, weights: str | Path | None = None) -> BackboneSpec:
    """The backbone spec of a config (``weights`` overrides ``config.weights``)."""
    weights = weights if weights is not None else config.weights
    return BackboneSpec(
        model_name=config.model_name,
        pretrained=config.pretrained,
        weights=None if weights is None else str(weights),
        vv_start=config.vv_start,
        layers=tuple(config.layers) or None,
        precision=config.precision,
    )


def default_cache_dir() -> Path:
    """``$ALIGN3D_CACHE`` or ``~/.cache/align3d-ad/features``."""
    import os

    root = os.environ.get("ALIGN3D_CACHE") or Path.home() / ".cache" / "align3d-ad"
    return Path(root) / "features"


def view_preset(config: Config) -> ViewPreset:
    """The view preset named (or listed) in ``render.views``."""
    views = config.render.views
    if isinstance(views, str):
        return get_view_preset(views)
    return view_preset_from_spec([tuple(v) for v in views])


def make_encoder(config: Config, backbone: Backbone) -> ViewEncoder:
    """The render -> encode -> cache pipeline of a config."""
    cfg = config.backbone
    cache = FeatureCache(None)
    if cfg.use_cache:
        cache = FeatureCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir())
    settings = RenderSettings(
        image_size=config.render.image_size or backbone.image_size,
        projection=config.render.projection,
        splat_radius=config.render.splat_radius,
    )
    if config.render.style == "reference":  # REFERENCE.md §2
        settings = ReferenceRenderSettings(image_size=settings.image_size)
    return ViewEncoder(
        backbone, view_preset(config), settings, cache=cache, batch_size=cfg.batch_size
    )


def backbone_record(backbone: Backbone) -> dict[str, Any]:
    """What a checkpoint remembers of its backbone."""
    return {
        "name": backbone.name,
        "fingerprint": backbone.fingerprint,
        "source": backbone.source,
        "random_weights": backbone.is_random,
        "image_size": backbone.image_size,
        "layers": list(backbone.layers),
        "vv_start": backbone.vv_start,
        "precision": backbone.precision,
    }


def save_checkpoint(
    run_dir: Path, head: AnomalyHead, *, config: Config, backbone: Backbone,
    progress: dict[str, Any], training_data: dict[str, Any], optimizers: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """Write the resume state, the head and the JSON description (each atomically);
    ``history``: one record per finished epoch (stage, epoch, losses), kept in the JSON."""
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(run_dir / STATE_FILE) as tmp:
        torch.save(
            {"format": FORMAT, "head": state,
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "progress": json.dumps(progress)},
            tmp,
        )  # fmt: skip
    tag = json.dumps({"stage": progress["stage"], "epoch": progress["epoch"]})
    with atomic_path(run_dir / HEAD_FILE) as tmp:
        save_file(state, str(tmp), metadata={"progress": tag, "format": str(FORMAT)})
    doc = {
        "format": FORMAT,
        "config": config.to_dict(),
        "backbone": backbone_record(backbone),
        "progress": progress,
        "training_data": training_data,
        "history": list(history or []),
        "seed": config.seed,
        "versions": versions(),
    }
    atomic_write_text(run_dir / CHECKPOINT_JSON, json.dumps(doc, indent=2) + "\n")


def _reason(err: BaseException) -> str:
    """The first sentence of an exception's message (libraries add paragraphs of advice)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return re.split(r"(?<=[a-z0-9])\. ", text)[0].rstrip(".")[:200]


def check_format(path: Path, found: Any, *, written_by: Any = None) -> None:
    """Refuse a checkpoint file whose format is invalid or newer than :data:`FORMAT`."""
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise ConfigError(f"{path}: format must be a positive integer, got {found!r}")
    if found > FORMAT:
        by = f"align3d-ad {written_by}" if isinstance(written_by, str) else "a newer align3d-ad"
        raise CheckpointMismatchError(
            f"{path} has checkpoint format {found} (written by {by}); align3d-ad {__version__} "
            f"reads format {FORMAT} at most: upgrade align3d-ad to load it"
        )


def _some(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:3])
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return f"tensor{'s' if len(keys) > 1 else ''} {shown}{more}"


def check_tensors(path: Path, tensors: Mapping[str, Any], head: AnomalyHead) -> None:
    """Refuse tensors that do not fit ``head``: missing, unexpected, or of another shape."""
    expected = head.state_dict()
    if not isinstance(tensors, Mapping) or not all(
        isinstance(t, torch.Tensor) for t in tensors.values()
    ):
        raise ConfigError(f"{path}: the head must be a mapping of names to tensors")
    missing = sorted(expected.keys() - tensors.keys())
    extra = sorted(tensors.keys() - expected.keys())
    wrong = [
        (k, tuple(tensors[k].shape), tuple(expected[k].shape))
        for k in sorted(expected.keys() & tensors.keys())
        if tensors[k].shape != expected[k].shape
    ]
    problems = [f"lacks {_some(missing)}"] if missing else []
    if extra:
        problems.append(f"holds unexpected {_some(extra)}")
    if wrong:
        key, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more of another shape)" if len(wrong) > 1 else ""
        problems.append(f"tensor {key!r} has shape {got}, the config needs {want}{more}")
    if problems:
        raise CheckpointMismatchError(
            f"{path}: {'; '.join(problems)}; the head does not match the config it was saved with"
        )


def load_state(run_dir: Path) -> dict[str, Any] | None:
    """The resume state of a run folder, or None when it has none (ConfigError when damaged)."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as err:
        raise ConfigError(
            f"{path}: not a readable resume state ({_reason(err)}); the file is damaged: "
            "train again without --resume"
        ) from err
    missing = [k for k in ("head", "optimizers", "progress") if not isinstance(state, dict)
               or k not in state]  # fmt: skip
    if missing:
        raise ConfigError(f"{path}: not a resume state written by align3d-ad (no {missing[0]!r})")
    check_format(path, state.get("format", 1))
    try:
        progress = json.loads(state["progress"])
    except (TypeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: the resume progress is not valid JSON ({err})") from err
    if not (isinstance(progress, dict) and isinstance(progress.get("stage"), int)
            and isinstance(progress.get("epoch"), int)):  # fmt: skip
        raise ConfigError(f"{path}: progress must hold integer stage and epoch, got {progress!r}")
    if not isinstance(state["optimizers"], dict):
        raise ConfigError(f"{path}: optimizers must be a mapping, got {type(state['optimizers'])}")
    state["progress"] = progress
    return state


def read_folder_document(
    folder: str | Path, name: str, *, what: str, kind: str = "folder", command: str
) -> tuple[dict[str, Any], Path]:
    """The JSON object ``folder/name`` that ``align3d-ad <command>`` writes, and its path.

    ConfigError with one line when the folder lacks it (``<what> <folder> must be a <kind>
    written by `align3d-ad <command>` ...``), or it cannot be read, is not JSON or not an object.
    """
    folder = Path(folder)
    doc_path = folder / name
    if not doc_path.is_file():
        raise ConfigError(
            f"{what} {folder} must be a {kind} written by `align3d-ad {command}`, got no {name} there"
        )
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{doc_path}: not valid JSON ({err.msg})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{doc_path}: cannot be read ({_reason(err)})") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{doc_path}: must hold a JSON object, got {type(doc).__name__}")
    return doc, doc_path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The ``checkpoint.json`` of a run folder, checked (ConfigError when it is not one)."""
    doc, doc_path = read_folder_document(
        path, CHECKPOINT_JSON, what="checkpoint", kind="run folder", command="train"
    )
    if "format" not in doc:
        raise ConfigError(f"{doc_path}: has no 'format' key; not written by `align3d-ad train`")
    versions_ = doc.get("versions")
    check_format(doc_path, doc["format"],
                 written_by=versions_.get("align3d_ad") if isinstance(versions_, dict) else None)
    for key, kind in (("config", dict), ("backbone", dict), ("progress", dict)):
        if not isinstance(doc.get(key), kind):
            got = "nothing" if key not in doc else type(doc[key]).__name__
            raise ConfigError(f"{doc_path}: '{key}' must be a JSON object, got {got}")
    for key in ("name", "fingerprint"):
        if not isinstance(doc["backbone"].get(key), str):
            raise ConfigError(f"{doc_path}: 'backbone.{key}' must be a string")
    return doc


def checkpoint_config(doc: dict[str, Any], run_dir: Path) -> Config:
    """The config stored in a checkpoint document (ConfigError naming the file when invalid)."""
    try:
        return config_from_dict(doc["config"])
    except ConfigError as err:
        raise ConfigError(f"{run_dir / CHECKPOINT_JSON}: {err}") from err


def check_backbone(doc: dict[str, Any], backbone: Backbone, run_dir: Path) -> None:
    """Refuse a backbone other than the checkpoint's (name or weights)."""
    want = doc["backbone"]
    if want["name"] != backbone.name or want["fingerprint"] != backbone.fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {run_dir} was trained with backbone {want['name']} (weights "
            f"{want['fingerprint']}), got {backbone.name} (weights {backbone.fingerprint}); "
            "use the same backbone and weights as in training"
        )


def load_head(run_dir: Path, doc: dict[str, Any], head: AnomalyHead) -> None:
    """Load ``head.safetensors`` into ``head``, checking it belongs to ``checkpoint.json``."""
    path = run_dir / HEAD_FILE
    if not path.is_file():
        raise ConfigError(f"checkpoint {run_dir} has no {HEAD_FILE}; was training interrupted?")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ConfigError(
            f"{path}: not a readable safetensors file ({_reason(err)}); the file is damaged "
            "(a truncated copy?): copy it again or train again"
        ) from err
    try:
        found = int(meta.get("format", "1"))
    except ValueError:
        found = meta.get("format")
    check_format(path, found)
    try:
        tag = json.loads(meta.get("progress", "{}"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: its 'progress' metadata is not valid JSON ({err.msg})") from err
    progress = doc.get("progress", {})
    if tag != {"stage": progress.get("stage"), "epoch": progress.get("epoch")}:
        raise ConfigError(
            f"checkpoint {run_dir}: {HEAD_FILE} ({tag}) and {CHECKPOINT_JSON} ({progress}) are from "
            "different epochs (an interrupted write); run `align3d-ad train --resume` to finish it"
        )
    check_tensors(path, tensors, head)
    head.load_state_dict(tensors)


def load_parts(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    backbone: Backbone | None = None,
) -> tuple[Config, ViewEncoder, AnomalyHead]:
    """The config, view encoder and trained head of a run folder (what a detector is made of).

    :meth:`align3d_ad.model.detector.Detector.from_checkpoint` assembles them; this module knows
    nothing of the detector, so training and the detector both depend on it and not on each other.

    Args:
        path: The run folder.
        device: auto | cpu | cuda[:N].
        weights: Local backbone weights (default: those named in the checkpoint's config).
        cache_dir: Feature cache folder (default: the checkpoint config's).
        use_cache: False = never read or write the feature cache.
        backbone: An already loaded backbone to reuse (checked against the checkpoint).
    """
    run_dir = Path(path)
    doc = read_checkpoint(run_dir)
    config = checkpoint_config(doc, run_dir)
    bb = config.backbone
    config = config.replace(**{
        "backbone.cache_dir": str(cache_dir) if cache_dir else bb.cache_dir,
        "backbone.use_cache": use_cache and bb.use_cache,
        "device": str(device),
    })  # fmt: skip
    if backbone is None:
        backbone = load_backbone(backbone_spec(config.backbone, weights=weights), device=device)
    check_backbone(doc, backbone, run_dir)
    text = PromptableTextEncoder(backbone)
    head = AnomalyHead(text, backbone.embed_dim, config.method)
    load_head(run_dir, doc, head)
    return config, make_encoder(config, backbone), head
