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
        self._forget_before(start)
        self._items.append((end, item))
        return [i for _, i in self._items]

    def peek(self, item: ContextItem, start: float) -> list[ContextItem]:
        """The window ending with an utterance starting at ``start`` seconds that is not kept
        (an interim result of an utterance still in progress)."""
        self._forget_before(start)
        kept = [i for _, i in self._items]
        room = self.config.max_utterances - 1  # the new item takes the last place
        return kept[max(0, len(kept) - room):] + [item]

    @property
    def last(self) -> ContextItem | None:
        """The newest utterance kept, or None."""
        return self._items[-1][1] if self._items else None

    def _forget_before(self, start: float) -> None:
        if self.config.max_seconds is not None:
            while self._items and start - self._items[0][0] > self.config.max_seconds:
                self._items.popleft()
