"""Runtime settings: one frozen dataclass per stage, loaded from config.toml, overridden by flags.

Precedence (lowest first): the dataclass defaults (identical to the project's config.toml, which
documents each one), a ``--config FILE``, then command-line flags. ``Settings.to_dict()`` is what
``--print-config`` prints and what the JSON output records at the start of a session.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from models.checks import (
    CTRANSLATE2_DEVICES,
    TORCH_DEVICE,
    check_checkpoint_file,
    check_ctranslate2_device,
    check_torch_device,
    check_type,
)

from .context import ContextConfig
from .errors import UserError
from .records import Speaker
from .segmenter import SegmenterConfig
from .speakers import SpeakerConfig, SpeakerMode, VoiceFeature
from .transcriber import TranscriberConfig

PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


@dataclass(frozen=True)
class InputConfig:
    """Where audio comes from. block_s: seconds per block; speed: replay pace (1 = real time)."""

    device: str | None = None  # listen: input device name or index; None = system default
    channels: int = 1  # listen: 1 (mono, voice attribution) or 2 (one speaker per channel)
    block_s: float = 0.1
    queue_blocks: int = 50  # listen: blocks that may wait before the newest are dropped
    speed: float = 1.0
    fast: bool = False  # replay as fast as possible
    max_seconds: float | None = None  # stop after this much stream time


@dataclass(frozen=True)
class AsrConfig:
    """The faster-whisper model. model: None = embedded tiny.en; device/compute_type as CTranslate2."""

    model: str | None = None
    device: str = "auto"
    compute_type: str = "int8"  # on CUDA "float16" is the usual choice
    decoding: TranscriberConfig = field(default_factory=TranscriberConfig)


@dataclass(frozen=True)
class SpeakersConfig:
    """How utterances are attributed to A/B: "auto" = channel for stereo, voice for mono;
    "voice", "channel", "single" (--speakers 1). swap_channels: right channel is A.
    feature / new_speaker_distance: the voice print and its threshold (streamer.speakers)."""

    mode: str = "auto"
    swap_channels: bool = False
    feature: str = "campplus"
    new_speaker_distance: float | None = None

    def resolve(self, channels: int) -> SpeakerConfig:
        """The attribution settings for a source with ``channels`` channels."""
        mode = self.mode if self.mode != "auto" else ("channel" if channels == 2 else "voice")
        try:
            return SpeakerConfig(
                mode=SpeakerMode(mode),
                channel_map=(Speaker.B, Speaker.A) if self.swap_channels else (Speaker.A, Speaker.B),
                feature=VoiceFeature(self.feature),
                new_speaker_distance=self.new_speaker_distance,
            )
        except ValueError as err:
            raise UserError(f"speakers: {err}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The fusion model. checkpoint: None = shipped default; modalities: what it is given."""

    checkpoint: str | None = None
    device: str = "auto"
    modalities: str = "both"  # both | audio | text


@dataclass(frozen=True)
class PartialsConfig:
    """Interim results of an utterance in progress (JSON type ``partial``).

    every_s: stream seconds between two partials of one utterance (0: no partials); max_lag_s:
    a live or paced session skips partials while processing trails the source by more than this.
    """

    every_s: float = 1.0
    max_lag_s: float = 0.5


@dataclass(frozen=True)
class Settings:
    """Every runtime setting, by stage."""

    input: InputConfig = field(default_factory=InputConfig)
    vad: SegmenterConfig = field(default_factory=SegmenterConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    partials: PartialsConfig = field(default_factory=PartialsConfig)

    def __post_init__(self) -> None:
        for name, (holds, expected) in RULES.items():
            value = _lookup(self, name)
            if value is not None and not holds(value):
                raise UserError(f"{describe(name)} must be {expected}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_devices(self) -> None:
        """UserError when a CUDA device is asked for on a machine without one, or the checkpoint
        file is missing, unreadable or not a checkpoint (no torch import).

        Separate from construction because it asks the hardware and the file system:
        ``--print-config`` does not.
        """
        check_ctranslate2_device(self.asr.device, describe("asr.device"))
        check_torch_device(self.model.device, describe("model.device"))
        if self.model.checkpoint is not None:
            check_checkpoint_file(Path(self.model.checkpoint))

    def updated(self, values: dict[str, dict[str, Any]]) -> "Settings":
        """A copy with ``{"section": {"key": value}}`` applied (None values are skipped)."""
        return _merge(self, values, "")


# The command-line flag of a setting, named in error messages next to the setting.
FLAGS = {
    "input.device": "--device", "input.channels": "--channels", "input.speed": "--speed",
    "input.fast": "--fast", "input.max_seconds": "--max-seconds", "vad.aggressiveness": "--vad-aggressiveness",
    "speakers.swap_channels": "--swap-channels", "asr.model": "--asr-model", "asr.device": "--asr-device",
    "asr.compute_type": "--compute-type", "context.max_utterances": "--context",
    "model.checkpoint": "--checkpoint", "model.device": "--model-device", "model.modalities": "--modalities",
}
# CTranslate2's compute types (ctranslate2.get_supported_compute_types lists the ones a device runs).
COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32",
)
WHISPER_MAX_TOKENS = 448  # Whisper's decoder context
STYLE_PROMPT_CHARS = 200  # asr.decoding.style_prompt: ~50 tokens, leaving the decoder room for the transcript


def _one_of(*choices: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(str, choices))


# Range rules per setting, beyond the types the dataclass annotations give (models.checks.check_type).
# vad.* is checked by SegmenterConfig itself. None ("unset") is never checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "input.channels": _one_of(1, 2),
    "input.block_s": ((lambda v: 0.01 <= v <= 1.0), "between 0.01 and 1 (seconds)"),
    "input.queue_blocks": ((lambda v: v >= 1), "at least 1"),
    "input.speed": ((lambda v: v > 0), "> 0 (a multiple of real time)"),
    "input.max_seconds": ((lambda v: v > 0), "> 0 (seconds)"),
    "speakers.mode": _one_of("auto", *(m.value for m in SpeakerMode)),
    "speakers.feature": _one_of(*(m.value for m in VoiceFeature)),
    "speakers.new_speaker_distance": ((lambda v: v > 0), "> 0"),
    "asr.device": _one_of(*CTRANSLATE2_DEVICES),
    "asr.compute_type": _one_of(*COMPUTE_TYPES),
    "asr.decoding.beam_size": ((lambda v: 1 <= v <= 20), "between 1 and 20"),
    "asr.decoding.max_tokens": ((lambda v: 1 <= v <= WHISPER_MAX_TOKENS), f"between 1 and {WHISPER_MAX_TOKENS}"),
    "asr.decoding.repetition_penalty": ((lambda v: v > 0), "> 0 (1 = no penalty)"),
    "asr.decoding.no_repeat_ngram_size": ((lambda v: v >= 0), ">= 0 (0 = off)"),
    "asr.decoding.fallback_beam_size": ((lambda v: 0 <= v <= 20), "between 0 and 20 (0 = off)"),
    "asr.decoding.fallback_logprob": ((lambda v: v <= 0), "<= 0 (a mean log-probability)"),
    "asr.decoding.no_speech_threshold": ((lambda v: 0 <= v <= 1), "between 0 and 1 (a probability)"),
    "asr.decoding.logprob_threshold": ((lambda v: v <= 0), "<= 0 (a mean log-probability)"),
    "asr.decoding.compression_ratio_threshold": ((lambda v: v > 0), "> 0"),
    "asr.decoding.prompt_tokens": ((lambda v: 0 <= v < WHISPER_MAX_TOKENS // 2), f"between 0 and {WHISPER_MAX_TOKENS // 2 - 1} (0 = off)"),
    "asr.decoding.style_prompt": ((lambda v: len(v) <= STYLE_PROMPT_CHARS), f"at most {STYLE_PROMPT_CHARS} characters"),
    "asr.decoding.lead_in_s": ((lambda v: 0 <= v <= 2), "between 0 and 2 (seconds)"),
    "context.max_utterances": ((lambda v: v >= 1), "at least 1 (the new utterance itself)"),
    "context.max_seconds": ((lambda v: v > 0), "> 0 (seconds)"),
    "model.device": ((lambda v: bool(TORCH_DEVICE.fullmatch(v))), "auto, cpu, cuda or cuda:N"),
    "model.modalities": _one_of("both", "audio", "text"),
    "partials.every_s": ((lambda v: v >= 0), ">= 0 (seconds; 0 turns partials off)"),
    "partials.max_lag_s": ((lambda v: v >= 0), ">= 0 (seconds)"),
}


def describe(name: str) -> str:
    """A setting as the user knows it: ``context.max_utterances (--context)``."""
    flag = FLAGS.get(name)
    return f"{name} ({flag})" if flag else name


def _lookup(settings: Any, name: str) -> Any:
    for part in name.split("."):
        settings = getattr(settings, part)
    return settings


def _unknown(name: str, known: list[str], where: str) -> UserError:
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], known, n=1)
    hint = f"; did you mean {where + close[0]!r}?" if close else "; see config.toml for the settings"
    return UserError(f"unknown setting {name!r}{hint}")


def _merge(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in values.items():
        name = f"{where}{key}"
        if key not in known:
            raise _unknown(name, list(known), where)
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise UserError(f"setting {name!r} is a section, not a value")
            changes[key] = _merge(current, value, f"{name}.")
        elif value is not None:
            check_type(known[key], value, describe(name))
            changes[key] = value
    try:
        return replace(obj, **changes)
    except TypeError as err:
        raise UserError(f"bad setting in {where or 'config'}: {err}") from None


def load_settings(path: Path | None = None) -> Settings:
    """Defaults updated from a TOML file (``[section] key = value``, the layout of config.toml)."""
    if path is None:
        return Settings()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"--config {path} is a directory, not a TOML file") from None
    except OSError as err:
        raise UserError(f"cannot read config file {path}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    return Settings().updated(_none_markers(raw))


def _none_markers(raw: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: the empty string stands for "unset" (None) in config files."""
    return {k: _none_markers(v) if isinstance(v, dict) else (None if v == "" else v) for k, v in raw.items()}
