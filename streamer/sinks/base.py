"""The interface every output shares and the runtime status record.

A session drives its sinks in this order::

    header(settings)   once, with the effective settings (config file + CLI flags)
    emit(event)        once per scored utterance       } interleaved, any number
    partial(event)     an utterance still in progress  }
    status(status)     whenever the runtime reports    }
    close(summary)     once, at the end (also after Ctrl-C)

``partial`` is optional: a sink without the method never sees interim results.

Sinks must not write to stdout unless they are the data sink (:class:`JsonlSink`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from streamer.records import EmotionEvent, PartialEvent
from streamer.sinks.summary import SessionSummary


class RunState(str, Enum):
    """What the runtime is doing."""

    LOADING = "loading models…"  # the input is open and kept; the models are still loading
    LISTENING = "listening"  # live input (microphone)
    REPLAYING = "replaying"  # reading a file
    FINISHED = "finished"  # input exhausted or stopped; no more events will come


@dataclass(frozen=True)
class RuntimeStatus:
    """A snapshot of the runtime's health, reported to the sinks now and then."""

    stream_time: float  # seconds: stream time the runtime has reached
    lag_s: float  # seconds: stream time received minus stream time processed
    queue_depth: int  # audio blocks waiting in the input queue
    dropped_blocks: int  # blocks dropped because the queue was full, since start
    overflows: int  # input overflows reported by the audio device, since start
    state: RunState


class Sink(Protocol):
    """Where events go: JSON lines, the live display, memory (tests), a summary table."""

    def header(self, settings: dict) -> None:
        """The effective settings of the session, before any event."""

    def emit(self, event: EmotionEvent) -> None:
        """One scored utterance."""

    def status(self, status: RuntimeStatus) -> None:
        """The latest runtime status."""

    def close(self, summary: SessionSummary | None) -> None:
        """End of the session; release what the sink holds. ``None``: the session never started
        (its models failed to load), so there is nothing to summarise."""


class Sinks:
    """Fan-out: a sink that forwards every call to each of its sinks, in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)

    def header(self, settings: dict) -> None:
        for sink in self.sinks:
            sink.header(settings)

    def emit(self, event: EmotionEvent) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def partial(self, event: PartialEvent) -> None:
        """An interim result, to the sinks that take them (those with a ``partial`` method)."""
        for sink in self.sinks:
            if hasattr(sink, "partial"):
                sink.partial(event)

    def status(self, status: RuntimeStatus) -> None:
        for sink in self.sinks:
            sink.status(status)

    def close(self, summary: SessionSummary | None) -> None:
        for sink in self.sinks:
            sink.close(summary)

    @property
    def reader_gone(self) -> bool:
        """True once a data sink's reader has gone (``emostream ... | head``): time to stop."""
        return any(getattr(sink, "reader_gone", False) for sink in self.sinks)
