"""Reading a ``--weights`` file never runs code from it (issue 12, defect 1)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import align3d_ad
from align3d_ad.app.cli import EXIT_USER_ERROR, main
from align3d_ad.backbone import (
    BackboneSpec,
    is_torchscript_archive,
    load_backbone,
    parameter_fingerprint,
    read_state_dict,
)
from align3d_ad.errors import CheckpointMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")


class _Payload:
    """Unpickling this creates ``marker`` (what a crafted file would do with ``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _crafted(path: Path, marker: Path, layout: str) -> Path:
    """A ``torch.save`` archive with a payload, dressed up as a TorchScript archive.

    layout: ``extra`` adds ``<prefix>/code/__torch__/x.py`` and ``<prefix>/extra/constants.pkl``
    (the issue's file), ``root-empty`` an empty ``<prefix>/constants.pkl`` (what torch itself
    takes for TorchScript), ``root-valid`` a well-formed one.
    """
    torch.save({"visual.proj": torch.zeros(2), "x": _Payload(marker)}, path)
    with zipfile.ZipFile(path) as zf:
        prefix = zf.namelist()[0].split("/")[0]
    constants = {
        "extra": ("extra/constants.pkl", b""),
        "root-empty": ("constants.pkl", b""),
        "root-valid": ("constants.pkl", pickle.dumps((), protocol=2)),
    }[layout]
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{prefix}/code/__torch__/x.py", b"")
        zf.writestr(f"{prefix}/{constants[0]}", constants[1])
    return path


def test_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """The crafted file is a real attack: the unsafe read the loader used to do runs it."""
    marker = tmp_path / "ran"
    path = _crafted(tmp_path / "evil.pt", marker, "extra")
    unsafe = {"weights_only": False}  # spelled this way so the package-wide grep stays meaningful
    torch.load(path, map_location="cpu", **unsafe)
    assert marker.exists()


@pytest.mark.parametrize("layout", ["extra", "root-empty", "root-valid"])
def test_crafted_archive_is_refused_and_its_payload_never_runs(tmp_path, layout):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path / "ViT-evil.pt", marker, layout)
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(BackboneSpec.tiny(weights=str(path)))
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert not marker.exists()
    with pytest.raises(CheckpointMismatchError):
        read_state_dict(path)
    assert not marker.exists()
    if layout == "extra":  # a torch.save archive: unpickled with weights_only=True, which refuses
        assert not is_torchscript_archive(path)
        assert "posix.system" in message and "nothing in it ran" in message


def test_crafted_archive_through_the_cli_is_one_line_exit_2(capsys, synth_mvtec, tmp_path):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path / "ViT-evil.pt", marker, "extra")
    code = main(["train", "--config", "configs/demo.yaml", "--root", str(synth_mvtec),
                 "--out", str(tmp_path / "run"), "--weights", str(path), "--device", "cpu",
                 "--quiet", "--set", "data.train_categories=[bagel]"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("align3d-ad train: error: ")
    assert str(path) in lines[0] and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("how", ["torch-legacy", "plain-pickle"])
def test_legacy_pickle_is_refused_in_one_line(tmp_path, how):
    marker = tmp_path / "ran"
    path = tmp_path / "legacy.pt"
    state = {"visual.proj": torch.zeros(2)}
    if how == "torch-legacy":  # a harmless state dict in the old non-zip format: refused anyway
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps({**state, "x": _Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(BackboneSpec.tiny(weights=str(path)))
    message = str(info.value)
    assert str(path) in message and "legacy (non-zip) pickle" in message and "\n" not in message
    assert not marker.exists()


def test_safetensors_without_the_suffix_is_recognised(tmp_path):
    source = load_backbone(BackboneSpec.tiny(seed=7))
    path = tmp_path / "weights.bin"
    save_file({k: v.contiguous() for k, v in source.clip.state_dict().items()}, str(path))
    loaded = load_backbone(BackboneSpec.tiny(weights=str(path)))
    assert loaded.fingerprint == parameter_fingerprint(source.clip)
    for name, tensor in source.clip.state_dict().items():
        assert torch.equal(loaded.clip.state_dict()[name], tensor), name


def test_no_unsafe_unpickling_anywhere_in_the_package():
    src = Path(align3d_ad.__file__).parent
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "weights_only=False" in p.read_text(encoding="utf-8").replace(" ", "")
    ]
    assert offenders == []
