"""The Python API (streamer.api) on the shipped example: files, chunked live audio, errors, README."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soxr

from streamer.api import Recognizer
from streamer.errors import UserError
from streamer.records import SAMPLE_RATE

from .conftest import EXAMPLES, ROOT, cli_env, read_tsv

pytestmark = pytest.mark.slow


def without_latency(event) -> dict:
    """An event's JSON line minus the one wall-clock field."""
    d = event.to_dict()
    d.pop("latency_ms")
    return d


@pytest.fixture(scope="module")
def file_events(recognizer: Recognizer):
    run = recognizer.replay(EXAMPLES / "dialogue.wav")
    return list(run), run.summary()


@pytest.fixture(scope="module")
def example_pcm() -> np.ndarray:
    """examples/dialogue.wav as int16 [n] at 16 kHz."""
    from streamer.sources import open_file

    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)  # exact: the file is 16-bit


def test_file_run_finds_every_turn(file_events) -> None:
    events, summary = file_events
    truth = read_tsv(EXAMPLES / "dialogue.tsv")
    assert len(events) == len(truth)
    for event, turn in zip(events, truth):
        assert abs(event.start - float(turn["start"])) < 0.3
        assert event.emotion in event.emotions and event.text
    assert summary.utterances == len(events)
    assert summary.duration_s == pytest.approx(31.05, abs=0.05)


def test_chunks_of_any_size_give_the_same_events(recognizer: Recognizer, file_events, example_pcm) -> None:
    """Byte chunks that split samples, fed to a stream, give the file's events exactly."""
    data = example_pcm.astype("<i2").tobytes()
    stream = recognizer.stream(channels=1, sample_rate=SAMPLE_RATE)
    sizes = [1, 3, 999, 3200, 7, 64001]
    events, offset, k = [], 0, 0
    while offset < len(data):
        events += stream.feed_pcm16(data[offset: offset + sizes[k % len(sizes)]])
        offset += sizes[k % len(sizes)]
        k += 1
    events += stream.close()
    assert [without_latency(e) for e in events] == [without_latency(e) for e in file_events[0]]
    assert stream.summary().to_dict() == file_events[1].to_dict()
    assert stream.session_record()["type"] == "session"


def test_other_sample_rates_are_resampled(recognizer: Recognizer, file_events, example_pcm) -> None:
    audio48 = soxr.resample(example_pcm.astype(np.float32) / 32768, SAMPLE_RATE, 48000)
    stream = recognizer.stream(channels=1, sample_rate=48000)
    events = [e for chunk in np.array_split(audio48, 40) for e in stream.feed(chunk)] + stream.close()
    reference = file_events[0]
    assert len(events) == len(reference)
    assert all(abs(a.start - b.start) < 0.05 for a, b in zip(events, reference))


def test_stream_errors(recognizer: Recognizer) -> None:
    with pytest.raises(UserError, match="channels"):
        recognizer.stream(channels=3)
    with pytest.raises(UserError, match="sample rate"):
        recognizer.stream(sample_rate=100)
    stream = recognizer.stream(channels=2)
    with pytest.raises(UserError, match=r"\[n, 2\]"):
        stream.feed(np.zeros((100, 1), np.float32))
    assert stream.close() == []
    with pytest.raises(UserError, match="closed"):
        stream.feed(np.zeros((16000, 2), np.float32))
    with pytest.raises(UserError, match="not found"):
        recognizer.replay(ROOT / "no-such-file.wav")


def test_readme_examples_run_as_written() -> None:
    """The Python blocks under "## Python API" in README.md, one after the other, from the
    repository root: the file example, then the live-stream one that continues it."""
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    labels = ("neutral", "happy", "sad", "angry")
    assert sum(any(f" {label} " in line for label in labels) for line in lines[:9]) == 8, done.stdout
    assert "dominant_emotion" in lines[8]
    assert sum("'type': 'utterance'" in line for line in lines[9:]) == 8, done.stdout
    assert "'type': 'summary'" in lines[-1]
