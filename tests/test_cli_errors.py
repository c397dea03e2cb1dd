"""Bad input reaches the user as one line and exit code 2, never as a traceback.

Also: replaying a file needs no PortAudio, and `listen` without PortAudio says what to install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
import pytest

from tests.conftest import EXAMPLES, ROOT, cli_env, json_lines, run_emostream

MONO = EXAMPLES / "dialogue.wav"


def write_video_only(path: Path) -> Path:
    """An MP4 holding one second of black video and no audio stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write(name: str, content: bytes | str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


RANDOM_BYTES = np.random.default_rng(0).bytes(20_000)

# case -> (makes the files in a folder and returns the arguments, what the message must mention)
CASES: dict[str, tuple[Callable[[Path], list[Any]], str]] = {
    "missing file": (lambda d: ["replay", d / "nope.wav"], "not found"),
    "directory": (lambda d: ["replay", d], "directory"),
    "empty file": (lambda d: ["replay", write("empty.wav", b"")(d)], "empty"),
    "text named .wav": (lambda d: ["replay", write("text.wav", "hello, not audio\n")(d)], "not an audio file"),
    "random bytes named .mp3": (lambda d: ["replay", write("noise.mp3", RANDOM_BYTES)(d)], "not an audio file"),
    "video without audio": (lambda d: ["replay", write_video_only(d / "video.mp4")], "no audio stream"),
    "bad TOML": (lambda d: ["replay", MONO, "--config", write("bad.toml", "[vad\nx =")(d)], "not valid TOML"),
    "unknown setting": (
        lambda d: ["replay", MONO, "--config", write("unknown.toml", "[vad]\nspeed = 2\n")(d)], "vad.speed"
    ),
    "missing config": (lambda d: ["replay", MONO, "--config", d / "nope.toml"], "not found"),
    "unknown checkpoint": (lambda d: ["replay", MONO, "--checkpoint", d / "nope.pt"], "checkpoint not found"),
    "corrupt checkpoint": (
        lambda d: ["replay", MONO, "--checkpoint", write("corrupt.pt", RANDOM_BYTES)(d)], "not a readable checkpoint"
    ),
    "unknown ASR model": (lambda d: ["replay", MONO, "--asr-model", "no-such-model"], "cannot load Whisper model"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line(case: str, tmp_path: Path) -> None:
    make_args, mention = CASES[case]
    assert_one_line_error(run_emostream(*make_args(tmp_path), "--no-display"), mention)


def test_unknown_device_is_one_line(portaudio: None) -> None:
    """Needs PortAudio: without it the error is that PortAudio is missing (tested below)."""
    done = run_emostream("listen", "--device", "no-such-device", "--no-display")
    assert_one_line_error(done, "`emostream listen --list-devices`")


def assert_one_line_error(done: subprocess.CompletedProcess[str], mention: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("emostream: error: ")
    assert mention in lines[0]
    assert done.stdout == ""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )


# Makes `import sounddevice` fail the way it does without the PortAudio shared library: its
# module code asks ctypes.util.find_library("portaudio") and raises OSError on None.
NO_PORTAUDIO = """
import ctypes.util, sys
find = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if "portaudio" in name else find(name)
"""


@pytest.mark.slow
def test_replay_does_not_need_sounddevice() -> None:
    """With sounddevice unimportable, a replay runs and never tries to import it."""
    done = run_python(
        "import sys\n"
        "sys.modules['sounddevice'] = None  # any import of it raises ImportError\n"
        "import streamer.cli\n"
        f"rc = streamer.cli.main(['replay', {str(MONO)!r}, '--fast', '--json', '--no-display', '--max-seconds', '4'])\n"
        "assert sys.modules['sounddevice'] is None\n"
        "sys.exit(rc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert [r["type"] for r in json_lines(done.stdout)] == ["session", "utterance", "summary"]


def test_no_portaudio_is_simulated() -> None:
    """The simulation below really makes sounddevice fail to load (else the next test proves nothing)."""
    done = run_python(NO_PORTAUDIO + "import sounddevice\n")
    assert done.returncode != 0
    assert "OSError: PortAudio library not found" in done.stderr


@pytest.mark.parametrize("args", [["listen"], ["listen", "--list-devices"]])
def test_listen_without_portaudio(args: list[str]) -> None:
    done = run_python(
        NO_PORTAUDIO
        + "import streamer.cli\n"
        + f"sys.exit(streamer.cli.main({[*args, '--json', '--no-display']!r}))\n"
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emostream: error: "), done.stderr
    assert "PortAudio" in lines[0] and "libportaudio2" in lines[0]
    assert done.stdout == ""
