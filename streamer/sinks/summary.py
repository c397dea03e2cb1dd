"""End-of-session summary: a pure function of the emitted events (the table is in summary_table.py).

Definitions (per speaker, as the latest speaker revisions name them; events ordered by start time):

- ``utterances``: number of events.
- ``speaking_time_s``: sum of ``end - start`` over the speaker's utterances, seconds.
- ``mean_emotions``: unweighted mean over utterances of the label -> probability maps (a label
  missing from an event counts as 0 there), so it still sums to 1.
- ``dominant_emotion``: the label with the largest mean probability.
- ``emotion_changes``: how many times the top label of one utterance differs from the top label
  of the same speaker's previous utterance.

``duration_s`` is the stream time the session covered: the caller's final stream time when
given, otherwise the end of the last utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamer.records import JSON_SCHEMA_VERSION, EmotionEvent, Speaker, latest_speakers


@dataclass(frozen=True)
class SpeakerSummary:
    """Aggregates over one speaker's utterances (see the module docstring for definitions)."""

    speaker: Speaker
    utterances: int
    speaking_time_s: float  # seconds
    mean_emotions: dict[str, float]  # label -> mean probability, labels in first-seen order
    dominant_emotion: str
    emotion_changes: int

    def to_dict(self) -> dict:
        return {
            "utterances": self.utterances,
            "speaking_time_s": round(self.speaking_time_s, 3),
            "mean_emotions": {k: round(v, 4) for k, v in self.mean_emotions.items()},
            "dominant_emotion": self.dominant_emotion,
            "emotion_changes": self.emotion_changes,
        }


@dataclass(frozen=True)
class SessionSummary:
    """What a session amounted to; the JSONL sink writes ``to_dict()`` as its last line."""

    duration_s: float  # seconds of stream covered
    utterances: int
    speakers: tuple[SpeakerSummary, ...]  # speakers that spoke, in Speaker order

    def to_dict(self) -> dict:
        return {
            "type": "summary",
            "schema": JSON_SCHEMA_VERSION,
            "duration_s": round(self.duration_s, 3),
            "utterances": self.utterances,
            "speakers": {s.speaker.value: s.to_dict() for s in self.speakers},
        }


def summarize(events: Sequence[EmotionEvent], duration_s: float | None = None) -> SessionSummary:
    """Summarise a session from its events.

    events: in the order they were emitted, so that each speaker is the one the latest revision
    names (``EmotionEvent.revisions``); they are sorted by start time here.
    duration_s: final stream time in seconds if the caller knows it; defaults to the last end.
    """
    ordered = sorted(latest_speakers(events), key=lambda e: (e.start, e.id))
    if duration_s is None:
        duration_s = max((e.end for e in ordered), default=0.0)
    speakers = tuple(
        _summarize_speaker(speaker, [e for e in ordered if e.speaker is speaker])
        for speaker in Speaker
        if any(e.speaker is speaker for e in ordered)
    )
    return SessionSummary(duration_s=duration_s, utterances=len(ordered), speakers=speakers)


def _summarize_speaker(speaker: Speaker, events: list[EmotionEvent]) -> SpeakerSummary:
    labels = list(dict.fromkeys(label for e in events for label in e.emotions))
    mean = {label: sum(e.emotions.get(label, 0.0) for e in events) / len(events) for label in labels}
    tops = [e.emotion for e in events]
    return SpeakerSummary(
        speaker=speaker,
        utterances=len(events),
        speaking_time_s=sum(e.end - e.start for e in events),
        mean_emotions=mean,
        dominant_emotion=max(mean, key=mean.__getitem__),
        emotion_changes=sum(a != b for a, b in zip(tops, tops[1:])),
    )
