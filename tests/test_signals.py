"""Signals and vanishing peers: SIGTERM and Ctrl-C mid-run and during start-up, the audio server
going away under `emostream listen`. Every case ends with a clean exit code and whole output."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import EXAMPLES, json_lines, start_emostream, utterances

MONO = EXAMPLES / "dialogue.wav"


def first_utterance_then(signum: int) -> tuple[subprocess.Popen[str], list[str], str, float]:
    """Replay the example in real time, send ``signum`` once the first utterance line is out;
    returns the process (ended), its stdout lines, its stderr and the seconds it took to end."""
    proc = start_emostream("replay", MONO, "--speed", "1", "--json", "--no-display")
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if '"type": "utterance"' in line:
                sent = time.perf_counter()
                proc.send_signal(signum)
                break
        rest, err = proc.communicate(timeout=60)
        took = time.perf_counter() - sent
    finally:
        watchdog.cancel()
    return proc, lines + rest.splitlines(keepends=True), err, took


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_mid_run_writes_the_summary(signum: int, code: int) -> None:
    proc, lines, err, took = first_utterance_then(signum)
    assert proc.returncode == code, err
    # Acted on at once, not after the Whisper call in progress and the models' teardown
    # (7-17 s on a loaded 2-core machine before; 0.2-0.4 s after).
    assert took < 3.0
    assert "Traceback" not in err
    records = json_lines("".join(lines))
    assert records[0]["type"] == "session" and records[-1]["type"] == "summary"
    assert records[-1]["utterances"] == len(utterances(records)) >= 1
    assert records[-1]["duration_s"] < 25  # stopped early: the example is 31 s


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_during_start_up(signum: int, code: int) -> None:
    """While the models load: no traceback, the signal's exit code, no half session on stdout."""
    proc = start_emostream("replay", MONO, "--fast", "--json", "--no-display")
    time.sleep(1.5)  # inside start-up: imports and model loading take several seconds
    started = time.perf_counter()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out == ""
    assert time.perf_counter() - started < 10  # acted on at once, not after the models loaded


@pytest.mark.slow
@pytest.mark.audio_server
def test_listen_when_the_audio_server_dies(private_pulse: int, portaudio: None) -> None:
    """Once the session is under way: an error line and exit code 1, the summary still written,
    and no utterance invented from the fragment that was in progress."""
    proc = start_emostream("listen", "--json", "--no-display")
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if '"type": "session"' in line:  # the input delivers and the session has begun
                time.sleep(1.0)
                os.kill(private_pulse, signal.SIGKILL)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "emostream: error: " in err and "input device" in err
    records = json_lines("".join(lines) + out)
    assert records[0]["type"] == "session" and records[-1]["type"] == "summary"
    assert utterances(records) == [] and records[-1]["utterances"] == 0
