"""MicrophoneSource against a real PulseAudio server (null sink monitor as the default input)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import InputLost, UserError
from streamer.records import SAMPLE_RATE
from streamer.sources import MicrophoneSource, open_file
from tests.conftest import EXAMPLES, write_audio
from tests.test_segmenter import assert_boundaries, segment

TURNS = 3  # the first three turns of examples/dialogue.wav keep the recording short (~13 s)


@pytest.mark.parametrize(("device", "phrase"), [("no-such-microphone", "matches"), (9999, "index 9999")])
def test_unknown_device_is_a_user_error(portaudio: None, device: str | int, phrase: str) -> None:
    with pytest.raises(UserError, match=f"no audio input device.*{phrase}"):
        MicrophoneSource(device=device)


@pytest.mark.audio_server
def test_records_what_is_played(
    audio_server: dict[str, str], portaudio: None, tmp_path: Path, dialogue_truth: list[tuple[str, float, float]]
) -> None:
    """Play the dialogue into the null sink, record the default source, find the turns again."""
    truth = [(start, end) for _, start, end in dialogue_truth[:TURNS]]
    original = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    original = original[: round((truth[-1][1] + 0.5) * SAMPLE_RATE)]
    clip = write_audio(tmp_path / "clip.wav", original[:, None], SAMPLE_RATE, "pcm_s16le")

    mic = MicrophoneSource(channels=1, block_s=0.1)
    blocks, player, played_until = [], None, None
    for block in mic.blocks():
        blocks.append(block)
        if player is None:  # the stream is running: start playing
            player = subprocess.Popen(["paplay", f"--device={audio_server['sink']}", str(clip)])
        elif played_until is None and player.poll() is not None:
            played_until = block.start
        elif played_until is not None and block.start > played_until + 1.0:
            mic.stop()
    assert player is not None and player.wait() == 0
    assert mic.sample_rate > 0 and mic.dropped_blocks == 0

    # Stream time comes from the sample count: blocks are contiguous.
    for before, after in zip(blocks, blocks[1:]):
        assert after.start == pytest.approx(before.start + before.duration, abs=1e-9)
    recorded = np.concatenate([b.samples[:, 0] for b in blocks])

    # Align with the original (unknown start latency) by cross-correlation.
    n = len(recorded) + len(original)
    corr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(original, n)), n)
    offset = int(np.argmax(corr[: len(recorded)]))
    aligned = recorded[offset : offset + len(original)]
    assert len(aligned) == len(original)
    similarity = np.dot(aligned, original) / (np.linalg.norm(aligned) * np.linalg.norm(original))
    assert similarity > 0.9

    # Speech energy where the turns are, (near) silence in the pauses between them.
    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(aligned[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)] ** 2)))

    for (_, end), (next_start, _) in zip(truth, truth[1:]):
        assert rms(end + 0.1, next_start - 0.1) < 0.01 * rms(*truth[0])
    for start, end in truth:
        assert rms(start, end) > 0.05

    shift = offset / SAMPLE_RATE
    assert_boundaries(segment(recorded), [(start + shift, end + shift) for start, end in truth])


@pytest.mark.audio_server
def test_vanished_server_ends_the_stream_with_an_error(private_pulse: int, portaudio: None) -> None:
    """An error, not a normal end: the partial block and utterance in progress must not be
    delivered as if the recording had ended there."""
    mic = MicrophoneSource(stall_s=3.0)
    safety = threading.Timer(20.0, mic.stop)  # should the source hang, end the test (then it fails)
    safety.start()
    received = 0
    with pytest.raises(InputLost, match="input device"):
        for _ in mic.blocks():
            received += 1
            if received == 5:
                os.kill(private_pulse, signal.SIGKILL)
    safety.cancel()
    assert received >= 5
