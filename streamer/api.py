"""The Python API: load the models once, then run any number of streams through them.

    from streamer.api import Recognizer

    recognizer = Recognizer()                      # loads Whisper, MiniLM and the checkpoint (seconds)
    run = recognizer.replay("examples/dialogue.wav")
    for event in run:                              # EmotionEvent, as each utterance is decided
        print(event.speaker.value, event.emotion, event.text)
    print(run.summary().to_dict())

    stream = recognizer.stream(channels=1, sample_rate=16000)   # live audio, chunk by chunk
    events = stream.feed_pcm16(chunk_bytes) + stream.close()

A :class:`Recognizer` holds the loaded models (read-only, shared); every :class:`Stream` has its
own stateful pipeline (VAD, speaker clustering, dialogue context). The objects are those of the
JSON schema: :class:`~streamer.records.EmotionEvent` (``to_dict()`` is the ``utterance`` line)
and :class:`~streamer.sinks.summary.SessionSummary` (``to_dict()`` is the ``summary`` line).
The command line, the server and the batch runner are built on this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .config import Settings, load_settings
from .errors import UserError
from .framing import from_pcm16
from .pipeline import Pipeline
from .records import SAMPLE_RATE, AudioBlock, EmotionEvent, PartialEvent
from .session import LoadedModels, load_models, make_pipeline
from .sinks.jsonl import session_record
from .sinks.summary import SessionSummary, summarize
from .sources import BlockMaker, open_file

__all__ = ["Recognizer", "Stream", "FileRun", "EmotionEvent", "PartialEvent", "SessionSummary", "Settings",
           "load_settings"]

MAX_STREAM_CHANNELS = 2  # one speaker per channel


class Recognizer:
    """The loaded models plus the settings every stream runs with.

    settings: default ``load_settings()`` (config.toml's values); e.g.
    ``load_settings("my.toml").updated({"vad": {"aggressiveness": 2}})``. asr_threads:
    CTranslate2 threads per Whisper call (None: one per core, at most 4).
    """

    def __init__(self, settings: Settings | None = None, asr_threads: int | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.models: LoadedModels = load_models(self.settings, asr_threads)

    def pipeline(self, channels: int) -> Pipeline:
        """A fresh pipeline over the shared models for one stream of ``channels`` (1 or 2)."""
        return make_pipeline(self.models, self.settings, channels)

    def stream(self, channels: int = 1, sample_rate: int = SAMPLE_RATE) -> "Stream":
        """A live stream: audio of ``channels`` (1 or 2) at ``sample_rate`` Hz, fed in chunks."""
        return Stream(self, channels, sample_rate)

    def replay(self, path: str | os.PathLike[str]) -> "FileRun":
        """A recording, processed as fast as possible (the events of ``replay --fast``)."""
        return FileRun(self, Path(path))


class Stream:
    """One audio stream through its own pipeline: ``feed`` chunks as they come, ``close`` at the end.

    Chunks of any length are cut into the configured blocks (``input.block_s``) and resampled to
    16 kHz when ``sample_rate`` differs. Every feed returns the events it completed.
    """

    def __init__(self, recognizer: Recognizer, channels: int, sample_rate: int) -> None:
        if channels not in range(1, MAX_STREAM_CHANNELS + 1):
            raise UserError(f"channels must be 1 or 2 (one speaker per channel), not {channels}")
        if not 8000 <= sample_rate <= 192000:
            raise UserError(f"sample rate must be 8000..192000 Hz, not {sample_rate}")
        self.channels = channels
        self.sample_rate = sample_rate
        self.settings = recognizer.settings
        self.pipeline = recognizer.pipeline(channels)
        self.events: list[EmotionEvent] = []
        self.closed = False
        self._blocks = BlockMaker(sample_rate, channels, recognizer.settings.input.block_s)
        self._partial = b""  # bytes of an incomplete sample frame, kept for the next chunk

    @property
    def stream_time(self) -> float:
        """Seconds of audio processed so far."""
        return self.pipeline.processed_until

    def session_record(self) -> dict:
        """The ``session`` line: the effective settings."""
        return session_record(self.settings.to_dict())

    def feed(self, samples: np.ndarray) -> list[EmotionEvent]:
        """samples: float32 in [-1, 1], [n] (mono) or [n, channels], at the stream's sample rate."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise UserError(f"expected samples shaped [n, {self.channels}], got {list(samples.shape)}")
        return self._run(self._blocks.feed(samples))

    def feed_pcm16(self, data: bytes) -> list[EmotionEvent]:
        """data: signed 16-bit little-endian PCM, channels interleaved; any length (a sample frame
        split between two chunks is joined)."""
        data = self._partial + data
        frame_bytes = 2 * self.channels
        whole = len(data) - len(data) % frame_bytes
        self._partial = data[whole:]
        pcm = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, self.channels)
        return self.feed(from_pcm16(pcm))

    def feed_block(self, block: AudioBlock) -> list[EmotionEvent]:
        """A block already at 16 kHz (from :mod:`streamer.sources`)."""
        return self._run([block])

    def partials(self) -> list[PartialEvent]:
        """Interim results for the utterances still in progress (``partials.every_s`` apart in
        stream time; each costs a Whisper pass). Poll it between feeds, when not behind."""
        return [] if self.closed else self.pipeline.partials()

    def close(self) -> list[EmotionEvent]:
        """End of stream: the last partial block and the utterance still open."""
        if self.closed:
            return []
        events = self._run(self._blocks.flush())
        self.closed = True
        self._partial = b""
        return events + self._keep(self.pipeline.flush())

    def summary(self) -> SessionSummary:
        """The summary of the events so far (final after :meth:`close`)."""
        return summarize(self.events, self.pipeline.processed_until)

    def _run(self, blocks: list[AudioBlock]) -> list[EmotionEvent]:
        if self.closed and blocks:
            raise UserError("the stream is closed")
        return self._keep([event for block in blocks for event in self.pipeline.feed(block)])

    def _keep(self, events: list[EmotionEvent]) -> list[EmotionEvent]:
        self.events.extend(events)
        return events


class FileRun:
    """A recording through a :class:`Stream`: iterate for the events, then ask for the summary."""

    def __init__(self, recognizer: Recognizer, path: Path) -> None:
        self.source = open_file(path)  # UserError now for a missing or non-audio file
        self.stream = Stream(recognizer, min(self.source.channels, MAX_STREAM_CHANNELS), SAMPLE_RATE)
        self.stream.pipeline.work_ahead = False  # nobody waits for each result (as replay --fast)
        self._block_s = recognizer.settings.input.block_s

    def __iter__(self) -> Iterator[EmotionEvent]:
        for block in self.source.blocks(self._block_s):
            yield from self.stream.feed_block(block)
        yield from self.stream.close()

    def summary(self) -> SessionSummary:
        return self.stream.summary()
