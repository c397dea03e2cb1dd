"""The acoustic frontend a checkpoint's audio vectors come from, by name (training) or by identity.

Two frontends exist: the CTranslate2 Whisper encoder (the embedded tiny.en, last layer, 2 s
silent tail: the default, whose pass the transcriber shares) and, since round 9, every layer of
the multilingual Whisper base in PyTorch (:class:`~models.frontends.whisper_layers.LayerStack`,
a pass of its own). Both give ``encode(audio).states`` [n_frames, D] and ``identity()``.
"""

from __future__ import annotations

from models.errors import UserError

AUDIO_FRONTENDS = ("", "base-layers")  # "": the runtime's Whisper encoder (tiny.en unless told otherwise)


def audio_frontend(name: str = "", model: str | None = None, device: str = "auto",
                   compute_type: str = "int8", cpu_threads: int | None = None):
    """The frontend called ``name``: "" = the CTranslate2 Whisper encoder of ``model`` (None: the
    embedded tiny.en) on ``device``/``compute_type``; "base-layers" = every layer of Whisper base."""
    if name == "base-layers":
        from .whisper_layers import LayerStack

        return LayerStack()
    if name:
        raise UserError(f"audio frontend {name!r}: one of {', '.join(repr(n) for n in AUDIO_FRONTENDS)}")
    from .whisper import WhisperEncoder

    return WhisperEncoder(model, device, compute_type, cpu_threads)


def audio_frontend_for(identity: dict[str, str], model: str | None = None, device: str = "auto",
                       compute_type: str = "int8", cpu_threads: int | None = None):
    """The frontend that makes the features a checkpoint's audio ``identity`` names: the layer
    stack for a ``whisper-layers:`` identity, else the Whisper encoder of ``model`` (None: tiny.en).
    The caller still compares identities (:func:`models.frontends.identity.same_frontend`)."""
    if identity.get("name", "").startswith("whisper-layers:") and identity.get("layers") == "all":
        return audio_frontend("base-layers")
    return audio_frontend("", model, device, compute_type, cpu_threads)
