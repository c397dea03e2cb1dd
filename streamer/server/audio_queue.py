"""The bounded queue between a WebSocket reader and its stream's pipeline worker (asyncio, no threads)."""

from __future__ import annotations

import asyncio
from collections import deque


class AudioQueue:
    """PCM bytes waiting for one stream's pipeline, in arrival order, at most ``max_bytes``.

    The reader ``put``s frames; once more than ``max_bytes`` wait, ``put`` returns only after
    the worker has taken them, so the reader stops reading the socket and TCP slows the client
    down (backpressure) instead of memory growing. The worker ``take``s everything waiting at once.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.ended = False  # the client said {"type": "end"}
        self._chunks: deque[bytes] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes > self.max_bytes

    async def put(self, data: bytes) -> None:
        """Queue a frame; wait while the queue is over its bound."""
        async with self._changed:
            self._chunks.append(data)
            self._bytes += len(data)
            self._changed.notify_all()
            await self._changed.wait_for(lambda: not self.full)

    async def end(self) -> None:
        """No more audio will come."""
        async with self._changed:
            self.ended = True
            self._changed.notify_all()

    async def take(self) -> tuple[bytes, bool]:
        """Wait for audio or the end; return (all queued bytes, whether the stream has ended)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._chunks or self.ended)
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._bytes = 0
            self._changed.notify_all()
            return data, self.ended
