"""The rolling dyadic context: the last N utterances of both speakers, oldest first."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models.predictor loads torch; settings are read before any model loads
    from models.predictor import ContextItem


@dataclass(frozen=True)
class ContextConfig:
    """max_utterances: window length, the new utterance included; max_seconds: also forget
    utterances that ended more than this long before the newest one started (None: no limit)."""

    max_utterances: int = 16
    max_seconds: float | None = 120.0


class DialogueContext:
    """Bounded buffer of (end time, item); memory is O(max_utterances) however long the session."""

    def __init__(self, config: ContextConfig = ContextConfig()) -> None:
        self.config = config
        self._items: deque[tuple[float, ContextItem]] = deque(maxlen=config.max_utterances)

    def push(self, item: ContextItem, start: float, end: float) -> list[ContextItem]:
        """Add the utterance spanning [start, end] seconds; return the window ending with it."""
        if self.config.max_seconds is not None:
            while self._items and start - self._items[0][0] > self.config.max_seconds:
                self._items.popleft()
        self._items.append((end, item))
        return [i for _, i in self._items]
