"""Checks of user-supplied settings that run before anything heavy is loaded.

Nothing here imports torch: a bad value must be answered in well under a second, before any
model loads. Two kinds of check:

- :func:`check_type`: a value read from TOML or a flag against its dataclass field's annotation
  (``int``, ``float``, ``str``, ``bool``, each optionally ``| None``). Floats must be finite.
- :func:`check_torch_device` / :func:`check_ctranslate2_device`: device names, and whether CUDA
  exists at all when CUDA is asked for (CTranslate2 counts the GPUs without loading torch).
- :func:`check_checkpoint_file`: the checkpoint file exists, can be read, is a torch archive and
  matches its ``.sha256`` sidecar (its contents are checked when torch loads it).
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import Field
from pathlib import Path
from typing import Any

from models.errors import UserError
from models.frontends.identity import sha256_of

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_KINDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false"}
TORCH_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
CTRANSLATE2_DEVICES = ("auto", "cpu", "cuda")


def check_type(field: Field, value: Any, name: str) -> None:
    """UserError unless ``value`` fits the annotation of ``field`` (``name``: how the user knows it).

    bool is not accepted for int/float (``true`` is not 1), an int is accepted for float, a float
    is not accepted for int (``frame_ms = 30.0``), and NaN/inf are refused. Fields annotated with
    anything else (sections, tuples, dicts) are not checked here.
    """
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    parts = [p.strip() for p in annotation.split("|")]
    base = [p for p in parts if p != "None"]
    if len(base) != 1 or base[0] not in _TYPES:
        return
    kind = base[0]
    if value is None and "None" in parts:
        return
    fits = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
    if fits and kind == "float" and not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    if not fits:
        raise UserError(f"{name} must be {_KINDS[kind]}, got {value!r}")


def cuda_device_count() -> int:
    """CUDA devices CTranslate2 sees (0 on a machine without a GPU or driver); no torch import."""
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


def check_torch_device(device: str, name: str) -> str:
    """``device`` when it names a torch device this program supports: auto, cpu, cuda, cuda:N.

    A CUDA request on a machine with no CUDA device is refused here, saying so. Whether the
    installed torch build has CUDA is checked where torch is loaded (``models.predictor``).
    """
    if not isinstance(device, str) or not TORCH_DEVICE.fullmatch(device):
        raise UserError(f"{name} must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        _require_cuda(name, device)
    return device


def check_ctranslate2_device(device: str, name: str) -> str:
    """``device`` when CTranslate2 knows it (auto, cpu, cuda) and, for cuda, a GPU is present."""
    if device not in CTRANSLATE2_DEVICES:
        raise UserError(f"{name} must be auto, cpu or cuda, got {device!r}")
    if device == "cuda":
        _require_cuda(name, device)
    return device


def _require_cuda(name: str, device: str) -> None:
    if cuda_device_count() == 0:
        raise UserError(f"{name} {device}: this machine has no CUDA device; use cpu or auto")


def check_checkpoint_file(path: Path) -> str:
    """The SHA-256 of the checkpoint file at ``path``; UserError when it is missing, unreadable,
    not a torch archive (``torch.save`` writes a zip), or does not match its ``.sha256`` sidecar."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        digest = sha256_of(path)
        archive = zipfile.is_zipfile(path)
    except OSError as err:
        raise UserError(f"cannot read checkpoint {path}: {err.strerror}") from None
    if not archive:
        raise UserError(f"{path} is not a readable checkpoint (not a torch archive)")
    sidecar = path.with_suffix(path.suffix + ".sha256")
    if sidecar.exists():
        expected = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
        if expected != digest:
            raise UserError(f"checkpoint {path} does not match its SHA-256 in {sidecar.name}: corrupt or replaced")
    return digest
