"""Cut one channel of a block stream into fixed, timestamped int16 frames for the VAD."""

from __future__ import annotations

import numpy as np

from streamer.records import SAMPLE_RATE, AudioBlock, Frame

VAD_FRAME_MS = (10, 20, 30)  # the frame lengths webrtcvad accepts


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 (x * 32768, rounded, clipped to the int16 range)."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1) (x / 32768), the inverse of :func:`to_pcm16`."""
    return pcm.astype(np.float32) / 32768.0


def frames_audio(frames: list[Frame]) -> np.ndarray:
    """The samples of consecutive frames as one float32 array in [-1, 1)."""
    return from_pcm16(np.concatenate([f.pcm for f in frames]))


class Framer:
    """Stage: AudioBlocks in, `frame_ms` Frames of one channel out (no I/O).

    Samples left over at the end of a block are carried into the next one, so frames are
    contiguous whatever the block sizes. Frame k starts at origin + k * frame_ms, where origin is
    the first block's start; times come from sample counts, so they do not drift. Blocks must be
    contiguous (ValueError otherwise). A final partial frame (< frame_ms) is never emitted.
    """

    def __init__(self, channel: int = 0, frame_ms: int = 30) -> None:
        if frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}, got {frame_ms}")
        self.channel = channel
        self.frame_ms = frame_ms
        self.frame_n = SAMPLE_RATE * frame_ms // 1000  # samples per frame
        self._origin: float | None = None  # stream time of the first sample, seconds
        self._consumed_n = 0  # samples received so far
        self._framed_n = 0  # samples already emitted in frames
        self._leftover = np.zeros(0, np.int16)

    def feed(self, block: AudioBlock) -> list[Frame]:
        """Append a block (samples float32 [n, channels]) and return the frames now complete."""
        if self._origin is None:
            self._origin = block.start
        expected = self._origin + self._consumed_n / SAMPLE_RATE
        if abs(block.start - expected) > 0.5 / SAMPLE_RATE:
            raise ValueError(f"block at {block.start:.6f} s is not contiguous (expected {expected:.6f} s)")
        self._consumed_n += len(block.samples)
        pcm = np.concatenate([self._leftover, to_pcm16(block.samples[:, self.channel])])
        n_frames = len(pcm) // self.frame_n
        frames = [
            Frame(
                pcm=pcm[i * self.frame_n : (i + 1) * self.frame_n],
                start=self._origin + (self._framed_n + i * self.frame_n) / SAMPLE_RATE,
                channel=self.channel,
            )
            for i in range(n_frames)
        ]
        self._framed_n += n_frames * self.frame_n
        self._leftover = pcm[n_frames * self.frame_n :]
        return frames
