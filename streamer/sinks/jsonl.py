"""JSON lines on stdout: the data output of a session.

Every line is one JSON object (UTF-8, not ASCII-escaped), flushed as soon as it is written, so
whatever was emitted survives Ctrl-C or a crash. Each object has ``"type"`` and ``"schema"``
(currently 1). A session writes, in order:

1. ``{"type": "session", "schema": 1, "settings": {...}}`` once: the effective settings (config
   file + CLI flags), so the run can be reproduced. Enums are written as their values, paths as
   strings.
2. ``{"type": "utterance", "schema": 1, "id", "speaker", "channel", "start", "end", "text",
   "emotions", "emotion", "confidence", "latency_ms", "context_size", "speaker_revisions", "model",
   "asr"}`` per
   scored utterance (:meth:`EmotionEvent.to_dict`; times in seconds of the stream), and
   ``{"type": "partial", ...}`` with the same keys for an utterance still in progress
   (:class:`PartialEvent`; ``speaker`` may be null), superseded by the utterance with its ``id``.
3. ``{"type": "summary", "schema": 1, "duration_s", "utterances", "speakers": {"A": {...}}}``
   once at the end (:meth:`SessionSummary.to_dict`).

Runtime statuses are not data and are not written.

When the reader goes away (``emostream ... | head``), the sink stops writing without a traceback
and sets :attr:`JsonlSink.reader_gone`; the runtime can poll it to stop early.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from typing import TextIO

from streamer.records import JSON_SCHEMA_VERSION, EmotionEvent, PartialEvent
from streamer.sinks.base import RuntimeStatus
from streamer.sinks.summary import SessionSummary

log = logging.getLogger(__name__)


class JsonlSink:
    """Writes the session as JSON lines to ``stream`` (default: the current ``sys.stdout``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.reader_gone = False  # True once a write hit a broken pipe; nothing is written after

    def header(self, settings: dict) -> None:
        self._write(session_record(settings))

    def emit(self, event: EmotionEvent) -> None:
        self._write(event.to_dict())

    def partial(self, event: PartialEvent) -> None:
        self._write(event.to_dict())

    def status(self, status: RuntimeStatus) -> None:
        """Statuses are for the display; the data stream does not carry them."""

    def close(self, summary: SessionSummary | None) -> None:
        if summary is not None:
            self._write(summary.to_dict())

    def _write(self, obj: dict) -> None:
        if self.reader_gone:
            return
        line = encode(obj)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self._on_reader_gone()

    def _on_reader_gone(self) -> None:
        self.reader_gone = True
        log.info("output reader closed the pipe; no more JSON lines will be written")
        # Python flushes sys.stdout again at exit, which would raise on the dead pipe and print
        # "Exception ignored ... BrokenPipeError". Point the descriptor at /dev/null instead
        # (the remedy in the Python docs, "Note on SIGPIPE").
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # not backed by a descriptor (StringIO)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def session_record(settings: dict) -> dict:
    """The first object of a session: the effective settings (laid out like config.toml)."""
    return {"type": "session", "schema": JSON_SCHEMA_VERSION, "settings": settings}


def encode(obj: dict) -> str:
    """One record as the text of a JSON line (no newline); also the server's text frames."""
    # allow_nan=False: a NaN probability is a bug upstream and must not become invalid JSON.
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_jsonable)


def _jsonable(value: object) -> object:
    """json.dumps fallback for the settings: enums by value, paths as strings."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")
