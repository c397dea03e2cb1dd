"""`emostream listen` end to end: play speech into a PulseAudio null sink, recognise it live.

The input opens before the models have loaded: the clip is played as soon as "recording" is
printed, so its first turns are heard while the models still load and must not be lost.
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from streamer.records import SAMPLE_RATE
from streamer.sources import open_file
from tests.conftest import EXAMPLES, json_lines, read_tsv, start_emostream, utterances, write_audio

TURNS = read_tsv(EXAMPLES / "dialogue.tsv")[:3]  # ~13 s: enough speech, a short test
MAX_SECONDS = 20  # stream seconds recorded: the clip plus margin for the start-up of paplay


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first three turns of the example dialogue and 0.5 s of its silence after them."""
    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    audio = audio[: round((float(TURNS[-1]["end"]) + 0.5) * SAMPLE_RATE)]
    return write_audio(tmp_path_factory.mktemp("listen") / "clip.wav", audio[:, None], SAMPLE_RATE, "pcm_s16le")


@pytest.mark.slow
@pytest.mark.audio_server
def test_listen_hears_the_played_dialogue_also_while_loading(
    audio_server: dict[str, str], portaudio: None, clip: Path
) -> None:
    proc = start_emostream("listen", "--json", "--no-display", "--max-seconds", MAX_SECONDS)
    watchdog = threading.Timer(180, proc.kill)  # a hung child fails the test instead of the suite
    watchdog.start()
    recording = threading.Event()
    err_lines: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            err_lines.append(line)
            if "recording from" in line:  # the input stream is open (models still loading): play now
                recording.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert recording.wait(120), "".join(err_lines)
        subprocess.run(["paplay", f"--device={audio_server['sink']}", str(clip)], check=True, timeout=60)
        out, _ = proc.communicate(timeout=120)  # --max-seconds ends the session
    finally:
        watchdog.cancel()
    reader.join(5)
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err.index("recording from") < err.index("loading models") < err.index("models loaded")
    heard_while_loading = float(re.search(r"processing the ([0-9.]+) s of audio heard meanwhile", err).group(1))

    records = json_lines(out)
    assert records[0]["type"] == "session" and records[-1]["type"] == "summary"
    assert records[0]["settings"]["input"]["max_seconds"] == MAX_SECONDS
    events = utterances(records)
    assert records[-1]["utterances"] == len(events)
    assert records[-1]["duration_s"] == pytest.approx(MAX_SECONDS, abs=0.2)
    heard = " ".join(e["text"] for e in events).lower()
    for word in ("sarah", "result", "wonderful", "finally", "failed", "sorry"):  # "lab result(s)": beam search hears either
        assert word in heard, heard
    assert all(0 <= e["start"] < e["end"] <= MAX_SECONDS for e in events)
    # Stream time follows the device's sample clock: turn gaps as in the file, whatever the latency.
    assert len(events) == len(TURNS), [e["text"] for e in events]
    # The first turn began in the audio heard while the models loaded (about 2 s since round 5),
    # and its first words are in its transcript ("sarah", above): that audio was kept, not dropped.
    assert events[0]["start"] < heard_while_loading, (events[0], heard_while_loading)
    offset = events[0]["start"] - float(TURNS[0]["start"])
    for event, turn in zip(events, TURNS):
        assert event["start"] - offset == pytest.approx(float(turn["start"]), abs=0.3)
