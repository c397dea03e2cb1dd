"""Runtime settings: one frozen dataclass per stage, loaded from config.toml, overridden by flags.

Precedence (lowest first): the dataclass defaults (identical to the project's config.toml, which
documents each one), a ``--config FILE``, then command-line flags. ``Settings.to_dict()`` is what
``--print-config`` prints and what the JSON output records at the start of a session.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .context import ContextConfig
from .errors import UserError
from .records import Speaker
from .segmenter import SegmenterConfig
from .transcriber import TranscriberConfig

if TYPE_CHECKING:
    from .speakers import SpeakerConfig

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
    feature: str = "pitch_mfcc"
    new_speaker_distance: float | None = None

    def resolve(self, channels: int) -> "SpeakerConfig":
        """The attribution settings for a source with ``channels`` channels."""
        from .speakers import SpeakerConfig, SpeakerMode, VoiceFeature

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
class Settings:
    """Every runtime setting, by stage."""

    input: InputConfig = field(default_factory=InputConfig)
    vad: SegmenterConfig = field(default_factory=SegmenterConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, values: dict[str, dict[str, Any]]) -> "Settings":
        """A copy with ``{"section": {"key": value}}`` applied (None values are skipped)."""
        return _merge(self, values, "")


def _merge(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in values.items():
        name = f"{where}{key}"
        if key not in known:
            raise UserError(f"unknown setting {name!r}; see config.toml for the settings")
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise UserError(f"setting {name!r} is a section, not a value")
            changes[key] = _merge(current, value, f"{name}.")
        elif value is not None:
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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    return Settings().updated(_none_markers(raw))


def _none_markers(raw: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: the empty string stands for "unset" (None) in config files."""
    return {k: _none_markers(v) if isinstance(v, dict) else (None if v == "" else v) for k, v in raw.items()}
