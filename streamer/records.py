"""Immutable records that flow between the streaming stages.

Times are seconds of the stream (sample index / sample rate), never wall-clock, so a replay
reproduces the same records whatever the machine's speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import ClassVar

import numpy as np

from models.audio import SAMPLE_RATE  # noqa: F401  (re-exported: 16 kHz, every stage after the source)
JSON_SCHEMA_VERSION = 1


class Speaker(str, Enum):
    """The two parties of a dyadic conversation."""

    A = "A"
    B = "B"

    @property
    def other(self) -> "Speaker":
        return Speaker.B if self is Speaker.A else Speaker.A


@dataclass(frozen=True)
class AudioBlock:
    """A block of source audio, already at 16 kHz.

    samples: float32 [n_samples, n_channels] in [-1, 1].
    start: stream time of the first sample, seconds.
    """

    samples: np.ndarray
    start: float

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE


@dataclass(frozen=True)
class Frame:
    """A fixed-length frame of one channel (webrtcvad wants 10, 20 or 30 ms).

    pcm: int16 [n_samples]; start: seconds; channel: source channel index.
    """

    pcm: np.ndarray
    start: float
    channel: int

    @property
    def end(self) -> float:
        return self.start + len(self.pcm) / SAMPLE_RATE


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech cut by the segmenter from one channel.

    audio: float32 [n_samples] at 16 kHz; start/end: seconds of the stream;
    decided_at: stream time at which end-of-speech was decided (end + hangover), seconds;
    voice_change: the segmenter cut it from the utterance before it, where it heard the voice
    change (``streamer.speaker_change``), so the two are likely different speakers;
    one_voice: (start, end) stream seconds of stretches inside it in which the speaker-change
    test heard one voice (whose CAM++ pass the voice print may reuse, ``streamer.speakers``).
    """

    id: int
    channel: int
    start: float
    end: float
    audio: np.ndarray = field(repr=False)
    decided_at: float
    voice_change: bool = False
    one_voice: tuple[tuple[float, float], ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Transcript:
    """What the ASR made of one utterance.

    audio_features: pooled encoder states [feature_dim] for the acoustic frontend, or None.
    encoder_states: the Whisper encoder output [n_frames, d_model] (kept for speaker features).
    """

    text: str
    no_speech_prob: float
    avg_logprob: float
    audio_features: np.ndarray | None = field(default=None, repr=False)
    encoder_states: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class EmotionEvent:
    """One scored utterance: the unit of the JSON-lines output (schema in README.md)."""

    TYPE: ClassVar[str] = "utterance"  # the JSON line's "type"

    id: int
    speaker: Speaker
    channel: int
    start: float  # seconds from stream start
    end: float  # seconds from stream start
    text: str
    emotions: dict[str, float]  # label -> probability, sums to 1
    latency_ms: float  # end-of-speech decision -> event emitted, wall-clock milliseconds
    model: dict[str, str]  # checkpoint identity (name, sha256, labels)
    asr: dict[str, str]  # ASR model identity
    context_size: int  # utterances (including this one) the model saw
    # (id, speaker) of earlier utterances whose speaker this one's evidence changed, oldest first
    revisions: tuple[tuple[int, Speaker], ...] = ()

    @property
    def emotion(self) -> str:
        return max(self.emotions, key=self.emotions.__getitem__)

    @property
    def confidence(self) -> float:
        return self.emotions[self.emotion]

    def to_dict(self) -> dict:
        return {
            "type": self.TYPE,
            "schema": JSON_SCHEMA_VERSION,
            "id": self.id,
            "speaker": self.speaker.value if self.speaker is not None else None,
            "channel": self.channel,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "emotions": {k: round(v, 4) for k, v in self.emotions.items()},
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "latency_ms": round(self.latency_ms, 1),
            "context_size": self.context_size,
            "speaker_revisions": [{"id": i, "speaker": speaker.value} for i, speaker in self.revisions],
            "model": self.model,
            "asr": self.asr,
        }


def revised(events: Sequence[EmotionEvent], revisions: Iterable[tuple[int, Speaker]]) -> list[EmotionEvent]:
    """``events`` with the speakers that ``revisions`` ((id, speaker) pairs) name put right."""
    speakers = dict(revisions)
    return [replace(e, speaker=speakers[e.id]) if e.id in speakers else e for e in events]


def latest_speakers(events: Sequence[EmotionEvent]) -> list[EmotionEvent]:
    """``events`` (in the order they were emitted) with every speaker as the latest event's
    ``revisions`` name it: the attribution a reader of the whole stream ends with."""
    return revised(events, [r for e in events for r in e.revisions])


@dataclass(frozen=True)
class PartialEvent(EmotionEvent):
    """An utterance still in progress, scored on the audio so far (JSON type ``partial``).

    Same fields as :class:`EmotionEvent`; ``end`` is the stream time the audio reaches so far,
    ``text`` the transcript so far, ``emotions`` a provisional distribution (from the text so
    far, and from the voice where its vector comes with the transcriber's pass). ``speaker`` is
    None while the speaker is not known yet (voice attribution decides when the utterance ends).
    ``latency_ms`` is the wall time spent scoring the partial. The final :class:`EmotionEvent`
    with the same ``id`` supersedes it.
    """

    TYPE: ClassVar[str] = "partial"

    speaker: Speaker | None
