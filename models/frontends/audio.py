"""The acoustic frontend a checkpoint's audio vectors come from, by name (training) or by identity.

Two frontends exist: the CTranslate2 Whisper encoder (the embedded tiny.en, last layer, 2 s
silent tail: the default, whose pass the transcriber shares) and, since round 9, every layer of
the multilingual Whisper base in PyTorch (:class:`~models.frontends.whisper_layers.LayerStack`,
a pass of its own). Both give ``encode(audio).states`` [n_frames, D] and ``identity()``.
"""

from __future__ import annotations

import re

from models.errors import UserError

# "": the runtime's Whisper encoder (tiny.en unless told otherwise); "base-layers": every layer of
# Whisper base; "base-layers-N": its layers up to block N (cheaper: the later blocks are not run).
AUDIO_FRONTENDS = ("", "base-layers", "base-layers-N")


def audio_frontend(name: str = "", model: str | None = None, device: str = "auto",
                   compute_type: str = "int8", cpu_threads: int | None = None):
    """The frontend called ``name``: "" = the CTranslate2 Whisper encoder of ``model`` (None: the
    embedded tiny.en) on ``device``/``compute_type``; "base-layers" = every layer of Whisper base;
    "base-layers-3" = its layers up to block 3 (both in PyTorch on ``device``: auto = CUDA when
    torch sees one)."""
    if name == "base-layers" or re.fullmatch(r"base-layers-[1-5]", name):
        return _layer_stack(int(name.rsplit("-", 1)[1]) if name[-1].isdigit() else None, device)
    if name:
        raise UserError(f"audio frontend {name!r}: one of {', '.join(repr(n) for n in AUDIO_FRONTENDS)}")
    from .whisper import WhisperEncoder

    return WhisperEncoder(model, device, compute_type, cpu_threads)


def audio_frontend_for(identity: dict[str, str], model: str | None = None, device: str = "auto",
                       compute_type: str = "int8", cpu_threads: int | None = None):
    """The frontend that makes the features a checkpoint's audio ``identity`` names: the layer
    stack for a ``whisper-layers:`` identity, else the Whisper encoder of ``model`` (None: tiny.en).
    The caller still compares identities (:func:`models.frontends.identity.same_frontend`)."""
    layers = identity.get("layers", "")
    if identity.get("name", "").startswith("whisper-layers:") and (layers == "all" or layers.startswith("0-")):
        return _layer_stack(None if layers == "all" else int(layers[2:]), device)
    return audio_frontend("", model, device, compute_type, cpu_threads)


def _layer_stack(up_to: int | None, device: str):
    """Whisper base's layers up to block ``up_to`` (None: all of them) on ``device`` ("auto",
    "cpu", "cuda"; the ASR's setting in the runtime)."""
    from ..predictor import pick_device
    from .whisper_layers import LayerStack

    return LayerStack(up_to=up_to, device=str(pick_device(device, "asr.device")))
