"""File source: formats, rates, channels, bad input, truncation; clocks; lazy PortAudio."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import UserError
from streamer.records import SAMPLE_RATE
from streamer.sources import BlockMaker, FastClock, RealTimeClock, open_file, paced
from tests.conftest import ROOT, write_audio

TONES = (440.0, 1000.0, 1500.0, 2500.0)  # Hz, one per channel, to tell channels apart


def tones(seconds: float, rate: int, channels: int) -> np.ndarray:
    """float32 [n, channels]: channel c is a sine at TONES[c], amplitude 0.5."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * TONES[c] * t) for c in range(channels)], 1).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    """Frequency of the strongest FFT bin of a 16 kHz signal."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def decode(path: Path, block_s: float = 0.1) -> tuple[np.ndarray, list]:
    blocks = list(open_file(path).blocks(block_s))
    return np.concatenate([b.samples for b in blocks]), blocks


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "channels"),
    [
        ("wav", "pcm_s16le", 44100, 2),
        ("wav", "pcm_s16le", 8000, 1),
        ("flac", "flac", 44100, 2),
        ("flac", "flac", 8000, 1),
        ("mp3", "libmp3lame", 44100, 2),
        ("mp3", "libmp3lame", 8000, 1),
        ("ogg", "libopus", 48000, 2),
    ],
)
def test_formats_rates_channels(tmp_path: Path, suffix: str, codec: str, rate: int, channels: int) -> None:
    path = write_audio(tmp_path / f"tone.{suffix}", tones(2.0, rate, channels), rate, codec)
    source = open_file(path)
    assert (source.channels, source.sample_rate) == (channels, rate)
    assert source.duration == pytest.approx(2.0, abs=0.03)

    audio, blocks = decode(path)
    assert audio.dtype == np.float32 and audio.shape[1] == channels
    assert abs(len(audio) / SAMPLE_RATE - 2.0) <= 0.03  # within one 30 ms frame
    # Blocks: 0.1 s each (the last may be shorter), starts from the sample count.
    assert all(len(b.samples) == 1600 for b in blocks[:-1]) and 0 < len(blocks[-1].samples) <= 1600
    assert [b.start for b in blocks] == [i * 1600 / SAMPLE_RATE for i in range(len(blocks))]
    # Resampled to 16 kHz: each channel's tone is where it should be, channels not swapped.
    middle = audio[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + SAMPLE_RATE]  # 1 s, away from codec edges
    for c in range(channels):
        assert peak_hz(middle[:, c]) == pytest.approx(TONES[c], abs=2.0)
        assert np.sqrt(np.mean(middle[:, c] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)  # lossy codecs


def test_more_than_two_channels_keeps_first_two(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_audio(tmp_path / "quad.wav", tones(1.0, 16000, 4), 16000, "pcm_s16le")
    with caplog.at_level(logging.WARNING):
        source = open_file(path)
    assert source.channels == 2 and "4 channels" in caplog.text
    audio, _ = decode(path)
    assert audio.shape == (16000, 2)
    assert [peak_hz(audio[:, c]) for c in (0, 1)] == pytest.approx(TONES[:2], abs=2.0)


def test_block_size_is_a_parameter(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.wav", tones(1.0, 22050, 1), 22050, "pcm_s16le")
    audio, blocks = decode(path, block_s=0.25)
    assert [len(b.samples) for b in blocks] == [4000, 4000, 4000, 4000]
    assert len(audio) == 16000


def test_block_maker_streams_without_losing_samples() -> None:
    """Chunks of awkward sizes through the streaming resampler: 1 s in, 1 s out (±1 sample)."""
    x = tones(1.0, 44100, 2)
    maker = BlockMaker(44100, 2, block_s=0.1)
    blocks = []
    for start, size in zip(np.cumsum([0, 1, 999, 4410, 7]), [1, 999, 4410, 7, 44100]):
        blocks += maker.feed(x[start : start + size])
    blocks += maker.flush()
    assert abs(sum(len(b.samples) for b in blocks) - 16000) <= 1


def test_example_dialogue_files_decode() -> None:
    mono, stereo = open_file(ROOT / "examples/dialogue.wav"), open_file(ROOT / "examples/dialogue_stereo.flac")
    assert (mono.channels, mono.sample_rate, stereo.channels) == (1, 16000, 2)
    assert mono.duration == pytest.approx(stereo.duration)


# --- bad input ----------------------------------------------------------------------------------


def make_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / {"missing": "nope.wav", "directory": "folder", "empty": "empty.wav",
                       "text": "notes.txt", "random": "noise.wav", "subtitles": "subs.srt"}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("These are meeting notes, not audio.\n" * 20)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(7).bytes(20_000))
    elif kind == "subtitles":
        path.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n")
    return path


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("missing", "not found"),
        ("directory", "is a directory"),
        ("empty", "is empty"),
        ("text", "not an audio file"),
        ("random", "not an audio file"),
        ("subtitles", "no audio stream"),
    ],
)
def test_bad_input_is_a_one_line_user_error(tmp_path: Path, kind: str, phrase: str) -> None:
    path = make_bad(tmp_path, kind)
    with pytest.raises(UserError) as caught:
        open_file(path)
    message = str(caught.value)
    assert phrase in message and str(path) in message and "\n" not in message


@pytest.mark.parametrize(("suffix", "codec"), [("wav", "pcm_s16le"), ("mp3", "libmp3lame")])
def test_truncated_file_is_used_up_to_the_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str, codec: str
) -> None:
    whole = write_audio(tmp_path / f"whole.{suffix}", tones(4.0, 44100, 2), 44100, codec)
    cut = tmp_path / f"cut.{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 3])  # mid-packet, odd byte count
    with caplog.at_level(logging.WARNING, logger="streamer.sources"):
        audio, _ = decode(cut)
    assert 1.5 < len(audio) / SAMPLE_RATE < 2.5  # about half of the 4 s
    assert "truncated" in caplog.text


# --- clocks -------------------------------------------------------------------------------------


def test_fast_clock_passes_blocks_through(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.wav", tones(1.0, 16000, 1), 16000, "pcm_s16le")
    direct = list(open_file(path).blocks())
    assert [b.start for b in paced(open_file(path).blocks(), FastClock())] == [b.start for b in direct]


def test_real_time_clock_never_releases_a_block_early(tmp_path: Path) -> None:
    """A block ending at stream time t is released no sooner than t / speed seconds after the
    clock's first call (a lower bound, so no timing flakiness)."""
    path = write_audio(tmp_path / "tone.wav", tones(1.0, 16000, 1), 16000, "pcm_s16le")
    clock = RealTimeClock(speed=5.0)
    begin = time.monotonic()
    for block in paced(open_file(path).blocks(), clock):
        assert time.monotonic() - begin >= (block.start + block.duration) / 5.0
    assert time.monotonic() - begin >= 1.0 / 5.0


def test_real_time_clock_rejects_bad_speed() -> None:
    with pytest.raises(UserError, match="speed"):
        RealTimeClock(speed=0)


def test_file_replay_does_not_need_portaudio() -> None:
    """sounddevice (which loads libportaudio) is imported only when a microphone is used."""
    code = "import sys, streamer.sources, streamer.devices; sys.exit('sounddevice' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
