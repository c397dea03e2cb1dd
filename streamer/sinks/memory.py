"""A sink that keeps everything it is given, for tests and for in-process callers."""

from __future__ import annotations

from streamer.records import EmotionEvent, PartialEvent
from streamer.sinks.base import RuntimeStatus
from streamer.sinks.summary import SessionSummary


class MemorySink:
    """Collects the session in lists; ``summary`` is set by ``close``."""

    def __init__(self) -> None:
        self.settings: dict | None = None
        self.events: list[EmotionEvent] = []
        self.partials: list[PartialEvent] = []
        self.statuses: list[RuntimeStatus] = []
        self.summary: SessionSummary | None = None

    def header(self, settings: dict) -> None:
        self.settings = settings

    def emit(self, event: EmotionEvent) -> None:
        self.events.append(event)

    def partial(self, event: PartialEvent) -> None:
        self.partials.append(event)

    def status(self, status: RuntimeStatus) -> None:
        self.statuses.append(status)

    def close(self, summary: SessionSummary | None) -> None:
        self.summary = summary
