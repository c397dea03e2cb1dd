"""Shared fixtures: generated speech and audio files, and the PulseAudio test server."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamer.records import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent

# EMOSTREAM_TEST_NO_PORTAUDIO=1 runs the suite as on a machine without the PortAudio library:
# `import sounddevice` then fails as it does there (its module code asks
# ctypes.util.find_library("portaudio") and raises OSError on None). Tests that need PortAudio
# take the `portaudio` fixture and skip with the reason.
if os.environ.get("EMOSTREAM_TEST_NO_PORTAUDIO"):
    import ctypes.util

    _find_library = ctypes.util.find_library
    ctypes.util.find_library = lambda name: None if "portaudio" in name else _find_library(name)

# The tests' tensors are tiny: one torch thread avoids OpenMP spin-waiting on a busy 2-core
# machine (the CLI does the same, see `emostream --threads`).
import torch  # noqa: E402

torch.set_num_threads(1)
EXAMPLES = ROOT / "examples"


LAYOUTS = {1: "mono", 2: "stereo", 4: "quad"}


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str) -> Path:
    """Encode float32 [n, channels] (1, 2 or 4 channels) at `rate` Hz with PyAV's `codec`."""
    layout = LAYOUTS[samples.shape[1]]
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for offset in range(0, len(pcm), 4096):
            frame = av.AudioFrame.from_ndarray(
                pcm[offset : offset + 4096].reshape(1, -1), format="s16", layout=layout
            )
            frame.sample_rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., np.ndarray]:
    """speak(text, voice="en-us") -> float32 [n] at 16 kHz, espeak-ng speech with its leading
    and trailing digital silence trimmed (so speech starts at sample 0 and ends at the last)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from streamer.sources import open_file

    folder = tmp_path_factory.mktemp("speech")

    def _speak(text: str, voice: str = "en-us") -> np.ndarray:
        path = folder / f"{hashlib.sha1(f'{voice}|{text}'.encode()).hexdigest()}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        audio = np.concatenate([b.samples[:, 0] for b in open_file(path).blocks()])
        loud = np.nonzero(np.abs(audio) > 1e-3)[0]
        return audio[loud[0] : loud[-1] + 1]

    return _speak


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header line."""
    header, *rows = path.read_text().splitlines()
    keys = header.split("\t")
    return [dict(zip(keys, row.split("\t"))) for row in rows]


@pytest.fixture(scope="session")
def dialogue_truth() -> list[tuple[str, float, float]]:
    """(speaker, start s, end s) per turn of examples/dialogue.wav."""
    return [(r["speaker"], float(r["start"]), float(r["end"])) for r in read_tsv(EXAMPLES / "dialogue.tsv")]


@pytest.fixture(scope="session")
def portaudio() -> None:
    """Skip when the PortAudio library is missing (streamer.devices then raises UserError)."""
    from streamer.devices import sounddevice
    from streamer.errors import UserError

    try:
        sounddevice()
    except UserError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def audio_server() -> dict[str, str]:
    """A PulseAudio server with the `emostream_sink` null sink whose monitor is the default
    source (tests/audio_server.sh); skips the test when no server can be started or reached.

    Returns {"sink": ..., "source": ...}. Play into the sink with
    `paplay --device=emostream_sink FILE`; record from the default input device.
    """
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "tests" / "audio_server.sh")], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no PulseAudio server: {exc}")
    if done.returncode != 0:
        pytest.skip(f"no PulseAudio server: {done.stderr.strip() or done.stdout.strip()}")
    if shutil.which("paplay") is None:
        pytest.skip("paplay not installed (apt install pulseaudio-utils)")
    return dict(item.split("=", 1) for item in done.stdout.split())


@pytest.fixture
def private_pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A PulseAudio server of this test's own (so it may be killed); returns its pid."""
    if subprocess.run(["which", "pulseaudio"], capture_output=True).returncode != 0:
        pytest.skip("pulseaudio not installed")
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    monkeypatch.setenv("PULSE_RUNTIME_PATH", str(runtime))
    started = subprocess.run(
        ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--log-level=error"], capture_output=True
    )
    if started.returncode != 0:
        pytest.skip(f"cannot start a private PulseAudio server: {started.stderr.decode().strip()}")
    pid = int((runtime / "pid").read_text())
    yield pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def noise() -> Callable[[float, float], np.ndarray]:
    """noise(seconds, dbfs) -> float32 [n] white Gaussian noise at 16 kHz, fixed seed."""

    def _noise(seconds: float, dbfs: float) -> np.ndarray:
        rng = np.random.default_rng(1234)
        return (rng.standard_normal(round(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(np.float32)

    return _noise


# --- the command line as a subprocess (tests/test_cli_*.py, tests/test_listen.py) -------------

EMOSTREAM = [sys.executable, "-m", "streamer.cli"]


def cli_env() -> dict[str, str]:
    """The environment for an `emostream` subprocess: this checkout first on the import path,
    no colour codes."""
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_emostream(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `emostream ARGS...` to the end, stdin closed; stdout and stderr captured as text."""
    return subprocess.run(
        [*EMOSTREAM, *map(str, args)], cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


def start_emostream(*args: str | os.PathLike[str], stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start `emostream ARGS...` with stdout piped (line-buffered text) for incremental reading.

    SIGINT is reset to its default disposition in the child: a test runner started in the
    background by a non-interactive shell ignores SIGINT, the child would inherit that, and
    Python only turns SIGINT into KeyboardInterrupt when it was not ignored at startup.
    """
    return subprocess.Popen(
        [*EMOSTREAM, *map(str, args)], cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as one JSON object (fails the test on any other line)."""
    lines = stdout.splitlines()
    assert lines, "no output on stdout"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stdout line is not JSON: {line!r}")
        assert isinstance(records[-1], dict), line
    return records


def utterances(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "utterance"]


# --- loaded models for in-process tests (tests/test_api.py, test_server.py, test_browser.py) ----


@pytest.fixture(scope="session")
def recognizer():
    """The default models, loaded once for the whole test session (streamer.api.Recognizer)."""
    from streamer.api import Recognizer

    return Recognizer()
