"""Finding, identifying and reading backbone weights (DESIGN.md, "Backbone weights").

Weights come from an open_clip tag (read from the Hugging Face cache, or downloaded where the
network allows) or from a local file given with ``--weights PATH``. Without either, loading fails at
once with :class:`~align3d_ad.errors.WeightsNotFoundError`: the cache and ``HF_HUB_OFFLINE`` are
checked before any download is tried, and a short connectivity probe replaces the hub client's
retries, so an air-gapped machine never waits.

Reading a weights file never runs code from it: safetensors are read by ``safetensors``, TorchScript
archives (OpenAI's ``.pt`` files) only by ``torch.jit.load``, other zip archives only by
``torch.load(weights_only=True)``; legacy (non-zip) pickles are refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.pretrained import download_pretrained, get_pretrained_cfg

from ..errors import CheckpointMismatchError, ConfigError, WeightsNotFoundError

logger = logging.getLogger(__name__)

#: Bytes hashed at each end of a weights file for its fingerprint (the whole file when smaller).
FINGERPRINT_CHUNK = 4 * 1024 * 1024
#: Seconds the connectivity probe waits before a download is declared impossible.
PROBE_TIMEOUT_S = 3.0
#: Default Hugging Face endpoint (``HF_ENDPOINT`` overrides it, as in huggingface_hub).
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
#: Values of ``HF_HUB_OFFLINE`` that mean offline (huggingface_hub's convention).
_TRUE_VALUES = {"1", "on", "yes", "true"}
#: Keys of OpenAI TorchScript archives that are not weights (open_clip pops the first three too).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
#: Where open_clip's URL downloads land when no cache_dir is given (open_clip pretrained.py).
_OPENAI_URL_CACHE = Path("~/.cache/clip")

HOW_TO_PROVIDE = (
    "pass --weights PATH (a state dict, safetensors, or OpenAI's TorchScript .pt such as "
    "ViT-L-14-336px.pt), or run once with network access so open_clip can download the weights"
)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for no network access."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def network_reachable(url: str | None = None, *, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (default: the HF endpoint) opens within timeout.

    DNS resolution cannot be given a timeout, so the probe runs in a daemon thread.
    """
    parsed = urlparse(url or os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT))
    host, port = parsed.hostname or "", parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _hf_candidates(hf_hub: str) -> tuple[str, list[str]]:
    """(repo id, file names to look for, safetensors first) of an open_clip ``hf_hub`` entry."""
    model_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return model_id, names


def find_cached_weights(
    model_name: str, tag: str, *, cache_dir: str | Path | None = None
) -> Path | None:
    """The local file of open_clip weights ``model_name``/``tag`` if already downloaded, else None.

    Looks in the Hugging Face cache (``cache_dir`` or the hub's default) and in open_clip's URL
    download folder (``cache_dir`` or ``~/.cache/clip``). Never touches the network.
    """
    cfg = get_pretrained_cfg(model_name, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        path = Path(cfg["file"]).expanduser()
        return path if path.is_file() else None
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, names = _hf_candidates(cfg["hf_hub"])
            for name in names:
                found = try_to_load_from_cache(
                    repo_id, name, cache_dir=None if cache_dir is None else str(cache_dir)
                )
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found)
    if cfg.get("url"):
        folder = Path(cache_dir) if cache_dir is not None else _OPENAI_URL_CACHE.expanduser()
        path = folder / os.path.basename(cfg["url"])
        if path.is_file():
            return path
    return None


def fetch_tag_weights(
    model_name: str, tag: str, *, cache_dir: str | Path | None = None, allow_download: bool = True
) -> Path:
    """The local file of open_clip weights ``model_name``/``tag``, downloading it if possible.

    Raises:
        ConfigError: ``tag`` is not an open_clip tag of ``model_name``.
        WeightsNotFoundError: Not cached and no download possible (offline, no network, or
            ``allow_download=False``); the message names ``--weights PATH``.
    """
    cfg = get_pretrained_cfg(model_name, tag)
    if not cfg:
        from open_clip import list_pretrained_tags_by_model

        tags = list_pretrained_tags_by_model(model_name)
        raise ConfigError(
            f"backbone pretrained must be an open_clip tag of {model_name} ({', '.join(tags) or 'none'})"
            f" or None, got {tag!r}"
        )
    cached = find_cached_weights(model_name, tag, cache_dir=cache_dir)
    if cached is not None:
        return cached
    what = f"weights {model_name}/{tag}"
    if not allow_download:
        raise WeightsNotFoundError(f"{what} are not in the local cache; {HOW_TO_PROVIDE}")
    if hub_offline():
        raise WeightsNotFoundError(
            f"{what} are not in the Hugging Face cache and HF_HUB_OFFLINE is set; {HOW_TO_PROVIDE}"
        )
    hub = cfg.get("hf_hub")
    probe_url = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT) if hub else cfg.get("url")
    if not network_reachable(probe_url):
        raise WeightsNotFoundError(
            f"{what} are not cached and {urlparse(probe_url).hostname} cannot be reached; "
            f"{HOW_TO_PROVIDE}"
        )
    logger.info("downloading %s through open_clip", what)
    try:
        path = download_pretrained(cfg, cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception as err:  # network and hub errors of every kind
        raise WeightsNotFoundError(f"{what} could not be downloaded ({err}); {HOW_TO_PROVIDE}") from err
    return Path(path)


def file_fingerprint(path: str | Path) -> str:
    """A fast identity of a weights file: ``sha256-headtail:<hex>``.

    The SHA-256 runs over the file size (8 bytes, little endian) followed by its first and last
    :data:`FINGERPRINT_CHUNK` bytes (the whole file when it is smaller than two chunks). This reads
    8 MiB instead of ~1 GB for ViT-L; any re-save, truncation or different checkpoint changes it.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    with path.open("rb") as fh:
        if size <= 2 * FINGERPRINT_CHUNK:
            digest.update(fh.read())
        else:
            digest.update(fh.read(FINGERPRINT_CHUNK))
            fh.seek(size - FINGERPRINT_CHUNK)
            digest.update(fh.read(FINGERPRINT_CHUNK))
    return f"sha256-headtail:{digest.hexdigest()}"


#: Values sampled (evenly spaced, ends included) from each tensor for :func:`parameter_fingerprint`.
FINGERPRINT_SAMPLES = 4096


def parameter_fingerprint(model: torch.nn.Module) -> str:
    """Identity of a model's weights by content: ``params-sha256:<hex>``.

    SHA-256 over every state-dict entry in name order: its name, shape, and float32 values at
    :data:`FINGERPRINT_SAMPLES` evenly spaced positions. The same weights give the same
    fingerprint whatever file they came from (an open_clip tag, OpenAI's TorchScript archive, a
    state dict, safetensors), so checkpoints and cached features carry over between them; a
    fine-tune or another checkpoint changes it. Costs milliseconds, even for ViT-L.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > FINGERPRINT_SAMPLES:
            index = torch.linspace(0, flat.numel() - 1, FINGERPRINT_SAMPLES, device=flat.device)
            flat = flat[index.round().long()]
        values = flat.float().cpu().numpy()
        digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
        digest.update(values.tobytes())
    return f"params-sha256:{digest.hexdigest()}"


def file_sha256(path: str | Path, *, chunk: int = 16 * 1024 * 1024) -> str:
    """Full SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _zip_names(path: str | Path) -> list[str] | None:
    """The entry names of a zip file, or None when ``path`` is not a readable zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a TorchScript zip archive (OpenAI's original CLIP .pt files are these).

    The layout torch's own reader expects: every entry under the first entry's top folder, which
    holds ``data.pkl``, ``constants.pkl`` and ``code/``. Such a file is read only by
    ``torch.jit.load``; anything else only by ``torch.load(weights_only=True)``.
    """
    names = _zip_names(path)
    if not names or "/" not in names[0]:
        return False
    prefix = names[0].split("/", 1)[0] + "/"
    inner = {n[len(prefix):] for n in names if n.startswith(prefix)}
    return {"data.pkl", "constants.pkl"} <= inner and any(n.startswith("code/") for n in inner)


def _is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: a little-endian u64 header length, then ``{``."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _unpickling_reason(err: Exception) -> str:
    """The line of torch's weights-only refusal that names what was refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or [type(err).__name__])[0][:200].rstrip(".")


def _read_file(path: Path) -> object:
    """The object a weights file holds, read without running code from it (see module doc)."""
    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if _zip_names(path) is None:
        with path.open("rb") as fh:
            pickled = fh.read(1) == b"\x80"  # the PROTO opcode of pickle protocols 2+
        what = "a legacy (non-zip) pickle, which could run code when read" if pickled else (
            "neither a zip archive, safetensors nor a pickle"
        )
        raise CheckpointMismatchError(
            f"weights file {path} must be a torch.save zip archive, safetensors or a TorchScript "
            f"archive, got {what}; re-save the state dict with torch.save or as safetensors"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation warnings
        if is_torchscript_archive(path):
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointMismatchError(
                f"weights file {path} must hold only tensors and plain containers, got other "
                f"Python objects ({_unpickling_reason(err)}); it is refused and nothing in it ran"
            ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat state dict on the CPU, never running code from it.

    Handles safetensors, ``torch.save`` zip archives (``{"state_dict": ...}`` wrappers and
    ``module.`` prefixes too) and OpenAI TorchScript archives (read only by ``torch.jit.load``;
    their non-weight keys are removed). Zip archives are unpickled with ``weights_only=True``;
    legacy (non-zip) pickles are refused.

    Raises:
        CheckpointMismatchError: The file is not a readable weights file, holds Python objects
            other than tensors and containers, or is a legacy pickle; one line naming the file.
    """
    path = Path(path)
    try:
        state = _read_file(path)
    except CheckpointMismatchError:
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else "no detail"
        raise CheckpointMismatchError(
            f"weights file {path} must be a state dict, safetensors or TorchScript archive, "
            f"got an unreadable file ({type(err).__name__}: {reason})"
        ) from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointMismatchError(
            f"weights file {path} must hold a mapping of tensor names to tensors, "
            f"got {type(state).__name__}"
        )
    if next(iter(state)).startswith("module."):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in _NON_WEIGHT_KEYS:
        state.pop(key, None)
    return dict(state)


def load_weights_into(model: torch.nn.Module, path: str | Path) -> None:
    """Load the weights file ``path`` into ``model`` (strict: every key, every shape).

    Raises:
        CheckpointMismatchError: The file does not fit the model; the message names both.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    state = read_state_dict(path)
    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise CheckpointMismatchError(
            f"weights file {path} must match the chosen backbone architecture, got mismatching "
            f"keys or shapes ({' '.join(first[:3])[:400]}); choose the model name the file was "
            "saved from"
        ) from err


def check_reference_sha256(path: str | Path, expected: str | None, *, name: str) -> bool:
    """Warn when ``path`` is not the reference file of ``name`` (full SHA-256); True if it is."""
    if not expected:
        return True
    actual = file_sha256(path)
    if actual != expected:
        warnings.warn(
            f"weights file {path} is not the reference file of {name} (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...); results may not match published numbers",
            stacklevel=3,
        )
        return False
    return True


def describe_tag(model_name: str, tag: str) -> dict[str, Any]:
    """open_clip's metadata of a tag (mean, std, quick_gelu, hf_hub, url), {} if unknown."""
    return dict(get_pretrained_cfg(model_name, tag))


__all__ = [
    "FINGERPRINT_CHUNK",
    "HOW_TO_PROVIDE",
    "check_reference_sha256",
    "describe_tag",
    "fetch_tag_weights",
    "file_fingerprint",
    "parameter_fingerprint",
    "file_sha256",
    "find_cached_weights",
    "hub_offline",
    "is_torchscript_archive",
    "load_weights_into",
    "network_reachable",
    "read_state_dict",
]
