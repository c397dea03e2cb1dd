"""Audio sources: a file (any format FFmpeg decodes) or a microphone, as 16 kHz AudioBlocks.

Every source yields `AudioBlock`s (float32 [n_samples, n_channels] at 16 kHz) whose `start` is
computed from the number of samples delivered so far, never from the wall clock. A file is read as
fast as it decodes; pacing it like a live stream is the caller's choice of `Clock` (`paced`).

Channels: mono and stereo are kept as they are (stereo = one speaker per channel). A file with
more than two channels keeps its first two (front left/right for surround layouts) and logs it.

A file is checked before a session starts (:func:`open_file`): a stream FFmpeg cannot decode, a
header sample rate outside what any recording uses, or no decodable sample at all is a UserError.
Samples that are not finite (NaN, inf) become silence, and samples beyond full scale are clipped,
each with one warning.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import soxr

from streamer.devices import resolve_device, sounddevice
from streamer.errors import InputLost, UserError
from streamer.records import SAMPLE_RATE, AudioBlock

log = logging.getLogger(__name__)

MAX_CHANNELS = 2  # speakers A and B; further channels are dropped
MIN_RATE = 4_000  # Hz; below this a header rate is corrupt (telephone speech is 8 kHz)
MAX_RATE = 768_000  # Hz; the highest rate audio interfaces record at
_SHORTFALL_S = 0.1  # decoded audio this much shorter than the announced duration = truncated
_WAV_BITS = {1: (8, 16, 24, 32), 3: (32, 64)}  # WAV format tag (PCM, IEEE float) -> usual sample sizes


class BlockMaker:
    """Stage: native-rate audio in, 16 kHz AudioBlocks of exactly `block_s` out (no I/O).

    feed() takes float32 [n, channels] at `in_rate`; the soxr streaming resampler keeps its
    filter state between chunks, so a long input is never held in memory. Block start times
    count the 16 kHz samples emitted. flush() drains the resampler and returns the last,
    possibly shorter, block.
    """

    def __init__(self, in_rate: int, channels: int, block_s: float) -> None:
        if block_s <= 0:
            raise ValueError(f"block_s must be > 0, got {block_s}")
        self.channels = channels
        self._block_n = max(1, round(block_s * SAMPLE_RATE))
        self._resampler = (
            None
            if in_rate == SAMPLE_RATE
            else soxr.ResampleStream(in_rate, SAMPLE_RATE, channels, dtype="float32", quality="HQ")
        )
        self._pending: list[np.ndarray] = []  # 16 kHz chunks not yet cut into blocks
        self._pending_n = 0
        self._emitted_n = 0  # 16 kHz samples already delivered in blocks

    def feed(self, samples: np.ndarray) -> list[AudioBlock]:
        """samples: float32 [n, channels] at the input rate -> the blocks now complete."""
        return self._push(self._resample(samples, last=False), final=False)

    def flush(self) -> list[AudioBlock]:
        """End of input: the resampler's tail and the last partial block."""
        empty = np.zeros((0, self.channels), np.float32)
        return self._push(self._resample(empty, last=True), final=True)

    def _resample(self, samples: np.ndarray, last: bool) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=last)

    def _push(self, chunk: np.ndarray, final: bool) -> list[AudioBlock]:
        if len(chunk):
            self._pending.append(chunk)
            self._pending_n += len(chunk)
        if self._pending_n < self._block_n and not (final and self._pending_n):
            return []
        audio = np.concatenate(self._pending)
        cut = len(audio) if final else len(audio) - len(audio) % self._block_n
        rest = audio[cut:]
        self._pending, self._pending_n = ([rest], len(rest)) if len(rest) else ([], 0)
        blocks = []
        for offset in range(0, cut, self._block_n):
            piece = audio[offset : min(offset + self._block_n, cut)]
            blocks.append(AudioBlock(samples=piece, start=self._emitted_n / SAMPLE_RATE))
            self._emitted_n += len(piece)
        return blocks


# --- clocks -----------------------------------------------------------------------------------


class Clock(Protocol):
    """Paces a stream: returns once `stream_time` (seconds) may be delivered."""

    def wait_until(self, stream_time: float) -> None: ...


class FastClock:
    """As fast as the pipeline runs: never waits (tests, benchmarks, batch runs)."""

    def wait_until(self, stream_time: float) -> None:
        return None


class RealTimeClock:
    """Real time times `speed`: stream time t is released at origin + t / speed (monotonic).

    The origin is the first call. It sleeps exactly the time remaining, once per call; a
    pipeline that falls behind is not slowed further.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise UserError(f"replay speed must be > 0, got {speed}")
        self.speed = speed
        self._origin: float | None = None  # time.monotonic() at stream time 0, seconds

    def wait_until(self, stream_time: float) -> None:
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        remaining = self._origin + stream_time / self.speed - now
        if remaining > 0:
            time.sleep(remaining)


def paced(blocks: Iterable[AudioBlock], clock: Clock) -> Iterator[AudioBlock]:
    """Yield each block once the clock reaches its end, as a live source would deliver it."""
    for block in blocks:
        clock.wait_until(block.start + block.duration)
        yield block


# --- files ------------------------------------------------------------------------------------


class FileSource:
    """An audio file, decoded by FFmpeg (PyAV) and resampled to 16 kHz on the fly.

    channels: channels delivered (1 or 2); sample_rate: the file's own rate, Hz;
    duration: seconds as announced by the container, or None when it does not say.
    """

    def __init__(self, path: Path, channels: int, sample_rate: int, duration: float | None):
        self.path = path
        self.channels = channels
        self.sample_rate = sample_rate
        self.duration = duration

    def blocks(self, block_s: float = 0.1) -> Iterator[AudioBlock]:
        """AudioBlocks of `block_s` seconds (the last may be shorter), float32 [n, channels].

        A file that stops decoding part way (truncated, corrupt tail) ends early with a
        warning; one that yields no audio at all raises UserError.
        """
        maker = BlockMaker(self.sample_rate, self.channels, block_s)
        decoded_n = 0  # native-rate samples decoded
        problem = ""
        repaired = Counter()  # "non-finite" / "beyond full scale" -> samples changed
        try:
            for samples in _decode(self.path, self.channels):
                if samples is None:
                    problem = problem or "a corrupt or cut packet"
                    continue
                decoded_n += len(samples)
                yield from maker.feed(_repair(samples, repaired))
        except av.FFmpegError as exc:
            if decoded_n == 0:
                raise UserError(f"cannot decode audio in {self.path}: {exc}") from None
            problem = f"a decoding error ({exc})"
        if decoded_n == 0:
            raise UserError(f"no audio could be decoded from {self.path}")
        yield from maker.flush()
        for kind, n in repaired.items():
            log.warning("%s: %d sample(s) %s: %s", self.path, n, kind, _REPAIRS[kind])
        decoded_s = decoded_n / self.sample_rate
        if not problem and self.duration is not None and decoded_s < self.duration - _SHORTFALL_S:
            problem = f"the container announces {self.duration:.2f} s"
        if problem:
            log.warning("%s looks truncated (%s): used the %.2f s that decode", self.path, problem, decoded_s)


_REPAIRS = {"not finite (NaN or inf)": "replaced by silence", "beyond full scale": "clipped to [-1, 1]"}


def _decode(path: Path, channels: int) -> Iterator[np.ndarray | None]:
    """The file's first audio stream as float32 [n, channels] chunks at its own rate; None marks
    a corrupt packet (decoding goes on). Raises av.FFmpegError where FFmpeg gives up."""
    with _open_container(path) as container:
        stream = container.streams.audio[0]
        # Packed (interleaved) float32, same layout and rate. Not planar: PyAV reads at most 8
        # planes, and a planar frame of 9+ channels crashed the process in to_ndarray.
        to_float = av.AudioResampler(format="flt")
        for packet in container.demux(stream):
            if packet.is_corrupt:
                yield None
            for frame in packet.decode():
                for converted in to_float.resample(frame):
                    yield converted.to_ndarray().reshape(-1, converted.layout.nb_channels)[:, :channels]


def _repair(samples: np.ndarray, counts: Counter[str]) -> np.ndarray:
    """NaN/inf -> 0 and |x| > 1 -> clipped, counted in ``counts`` (float files can hold both)."""
    finite = np.isfinite(samples)
    if not finite.all():
        counts["not finite (NaN or inf)"] += int(np.count_nonzero(~finite))
        samples = np.where(finite, samples, np.float32(0.0))
    loud = np.abs(samples) > 1.0
    if loud.any():
        counts["beyond full scale"] += int(np.count_nonzero(loud))
        samples = np.clip(samples, -1.0, 1.0)
    return samples


def open_file(path: str | os.PathLike[str]) -> FileSource:
    """Check and describe an audio file; UserError with one line for anything unusable.

    Checked here, before any model loads or any output is written: the file exists and FFmpeg
    reads an audio stream from it, that stream has a decoder, a plausible sample rate
    (MIN_RATE..MAX_RATE Hz) and channels, and at least one sample decodes.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"audio file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise UserError(f"audio file is empty: {path}")
    with _open_container(path) as container:
        if not container.streams.audio:
            kinds = " and ".join(sorted({s.type for s in container.streams})) or "no"
            raise UserError(
                f"{path} is not an audio file: FFmpeg reads it as {container.format.name} "
                f"with {kinds} streams and no audio stream"
            )
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            wav = _wav_format(path)
            encoding = f"WAV format tag {wav[0]:#06x}" if wav else container.format.name
            raise UserError(f"{path}: no decoder for its audio encoding ({encoding}); convert it to WAV PCM or FLAC")
        file_channels = stream.codec_context.layout.nb_channels
        rate = stream.codec_context.sample_rate
        if not rate or not file_channels:
            raise UserError(f"{path}: audio stream without a sample rate or channels")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise UserError(
                f"{path}: the header says {rate} Hz, outside {MIN_RATE}..{MAX_RATE} Hz: "
                "a corrupt header or not a recording"
            )
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
    if file_channels > MAX_CHANNELS:
        log.warning("%s has %d channels: using the first %d", path, file_channels, MAX_CHANNELS)
    channels = min(file_channels, MAX_CHANNELS)
    _warn_odd_wav_bits(path)
    try:
        if next((s for s in _decode(path, channels) if s is not None and len(s)), None) is None:
            raise UserError(f"no audio could be decoded from {path}: it holds no samples")
    except av.FFmpegError as exc:
        raise UserError(f"cannot decode audio in {path}: {exc}") from None
    return FileSource(path, channels, rate, duration)


def _wav_format(path: Path) -> tuple[int, int] | None:
    """(format tag, bits per sample) from a WAV file's fmt chunk; None for other files."""
    with open(path, "rb") as f:
        head = f.read(4096)
    at = head.find(b"fmt ")
    if not head.startswith(b"RIFF") or at < 0 or len(head) < at + 24:
        return None
    tag, _, _, _, _, bits = struct.unpack_from("<HHIIHH", head, at + 8)
    return tag, bits


def _warn_odd_wav_bits(path: Path) -> None:
    """Warn when a WAV header gives a sample size its format does not use (a 7-bit "PCM" file is
    decoded as FFmpeg guesses, most likely garbage)."""
    tag, bits = _wav_format(path) or (0, 0)
    if tag in _WAV_BITS and bits not in _WAV_BITS[tag]:
        log.warning("%s: the WAV header says %d bits per sample, which its format does not use: "
                    "the audio may decode as noise", path, bits)


def _open_container(path: Path) -> Any:
    """av.open for reading, with FFmpeg's refusal turned into a UserError."""
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise UserError(f"{path} is not an audio file FFmpeg can read ({exc.strerror})") from None


# --- microphone -------------------------------------------------------------------------------

_END = None  # queue sentinel: the stream has finished


class MicrophoneSource:
    """Live input through PortAudio, at the device's own rate, resampled to 16 kHz.

    device: None (default input), an index or a name (see streamer.devices.resolve_device).
    channels: 1 or 2. block_s: seconds per PortAudio callback and per yielded block.
    queue_blocks: callback blocks that may wait for the consumer (queue_blocks * block_s of
    latency at most).

    The PortAudio callback only copies the block into a bounded queue. When the queue is full
    the callback drops the *newest* block and counts it (`dropped_blocks`); the consumer then
    finds a gap in the device's sample count and fills it with silence, so stream time keeps
    following the device clock. PortAudio status flags (input overflow...) are counted in
    `status_counts`. A device that stops delivering (unplugged, server gone) makes `blocks()`
    raise InputLost after `stall_s` seconds without audio, or at once when PortAudio reports the
    stream finished; the partial block in the resampler is dropped, not delivered.
    """

    def __init__(
        self,
        device: int | str | None = None,
        channels: int = 1,
        block_s: float = 0.1,
        queue_blocks: int = 50,
        stall_s: float = 3.0,
    ) -> None:
        if channels not in (1, 2):
            raise UserError(f"channels must be 1 or 2, got {channels}")
        self._sd = sounddevice()
        self.info = resolve_device(device)
        if self.info["max_input_channels"] < channels:
            raise UserError(
                f"input device {self.info['name']!r} has {self.info['max_input_channels']} "
                f"channel(s); {channels} requested"
            )
        self.channels = channels
        self.sample_rate = int(self.info["default_samplerate"])  # native: many refuse 16 kHz
        self.block_s = block_s
        self.stall_s = stall_s
        self.dropped_blocks = 0
        self.status_counts: Counter[str] = Counter()
        self._queue: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(queue_blocks)
        self._captured_n = 0  # device samples seen by the callback
        self._stopping = threading.Event()

    @property
    def queue_depth(self) -> int:
        """Callback blocks waiting for the consumer now (0 = keeping up)."""
        return self._queue.qsize()

    def stop(self) -> None:
        """End `blocks()` (callable from another thread or a signal handler)."""
        self._stopping.set()
        _put_end(self._queue)

    def blocks(self) -> Iterator[AudioBlock]:
        """Open the stream and yield 16 kHz AudioBlocks until stop() or the device goes away.

        One recording per MicrophoneSource: iterate blocks() once.
        """
        sd = self._sd
        maker = BlockMaker(self.sample_rate, self.channels, self.block_s)
        try:
            stream = sd.InputStream(
                device=self.info["index"],
                channels=self.channels,
                samplerate=self.sample_rate,
                blocksize=max(1, round(self.block_s * self.sample_rate)),
                dtype="float32",
                callback=self._callback,
                finished_callback=lambda: _put_end(self._queue),
            )
            stream.start()
        except sd.PortAudioError as exc:
            raise UserError(f"cannot open input device {self.info['name']!r}: {exc}") from None
        log.info("recording from %r at %d Hz", self.info["name"], self.sample_rate)
        expected_n = 0  # device samples handed to the resampler, gaps included
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.stall_s)
                except queue.Empty:
                    raise InputLost(
                        f"no audio from input device {self.info['name']!r} for {self.stall_s:.1f} s "
                        "(unplugged, or the audio server stopped?)"
                    ) from None
                if item is _END:
                    if not self._stopping.is_set():
                        raise InputLost(f"input device {self.info['name']!r} stopped delivering audio "
                                        "(unplugged, or the audio server stopped?)")
                    break
                first_n, samples = item
                if first_n > expected_n:  # blocks dropped while the consumer was behind
                    gap = np.zeros((first_n - expected_n, self.channels), np.float32)
                    seconds = len(gap) / self.sample_rate
                    log.warning("fell behind: %.2f s of input replaced by silence", seconds)
                    yield from maker.feed(gap)
                yield from maker.feed(samples)
                expected_n = first_n + len(samples)
            yield from maker.flush()
        finally:
            stream.close(ignore_errors=True)
            if self.dropped_blocks or self.status_counts:
                log.warning(
                    "input: %d block(s) dropped, PortAudio status %s",
                    self.dropped_blocks,
                    dict(self.status_counts),
                )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: copy, enqueue, count. Nothing else happens here."""
        if status:
            for flag in ("input_overflow", "input_underflow"):
                if getattr(status, flag):
                    self.status_counts[flag] += 1
        try:
            self._queue.put_nowait((self._captured_n, indata.copy()))
        except queue.Full:
            self.dropped_blocks += 1
        self._captured_n += frames


def _put_end(q: queue.Queue[Any]) -> None:
    """Enqueue the end sentinel, discarding the oldest waiting audio if the queue is full."""
    while True:
        try:
            q.put_nowait(_END)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
