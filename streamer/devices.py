"""Audio input devices through PortAudio (sounddevice), imported lazily.

`sounddevice` loads the PortAudio shared library when it is imported and raises OSError when the
library is missing; importing it only here, on demand, lets a machine without PortAudio still
replay files.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from streamer.errors import UserError


def sounddevice() -> ModuleType:
    """Import and return the `sounddevice` module; UserError when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:
        raise UserError(
            "PortAudio library not found: install libportaudio2 (apt) or portaudio (brew) "
            f"to use a microphone; replaying files works without it ({exc})"
        ) from None
    return sd


def list_input_devices() -> list[dict[str, Any]]:
    """Every device with input channels, for `--list-devices`.

    Each dict: index (int), name (str), hostapi (str), channels (max input channels, int),
    samplerate (the device's default rate, Hz, float), default (bool: the default input device).
    """
    sd = sounddevice()
    default_index = _default_input_index(sd)
    hostapis = sd.query_hostapis()
    return [
        {
            "index": info["index"],
            "name": info["name"],
            "hostapi": hostapis[info["hostapi"]]["name"],
            "channels": info["max_input_channels"],
            "samplerate": info["default_samplerate"],
            "default": info["index"] == default_index,
        }
        for info in sd.query_devices()
        if info["max_input_channels"] > 0
    ]


def resolve_device(device: int | str | None) -> dict[str, Any]:
    """PortAudio's info dict for one input device.

    device: None for the default input device, an index (int or a string of digits), or a name:
    an exact name wins, otherwise a unique case-insensitive substring of one input device's name.
    Raises UserError when no input device, or more than one, matches.
    """
    sd = sounddevice()
    inputs = [info for info in sd.query_devices() if info["max_input_channels"] > 0]
    hint = "run `emostream listen --list-devices` to see the input devices"
    if device is None:
        index = _default_input_index(sd)
        if index is None:
            raise UserError(f"no default audio input device; pass --device ({hint})")
        return dict(sd.query_devices(index))
    if isinstance(device, int) or device.strip().isdigit():
        index = int(device)
        for info in inputs:
            if info["index"] == index:
                return dict(info)
        raise UserError(f"no audio input device with index {index} ({hint})")
    exact = [info for info in inputs if info["name"] == device]
    matches = exact or [info for info in inputs if device.lower() in info["name"].lower()]
    if not matches:
        raise UserError(f"no audio input device matches {device!r} ({hint})")
    if len(matches) > 1:
        names = ", ".join(f"{m['index']}: {m['name']}" for m in matches)
        raise UserError(f"{device!r} matches several input devices ({names}); pass an index")
    return dict(matches[0])


def _default_input_index(sd: ModuleType) -> int | None:
    """Index of the default input device, or None when PortAudio reports none."""
    index = sd.default.device[0]
    if index is None or index < 0:
        return None
    return int(index)
