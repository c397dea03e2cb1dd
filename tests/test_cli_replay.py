"""`emostream replay` end to end: a subprocess over the example dialogue with the real models.

Each distinct command runs once per module (module-scoped fixtures); the tests read its output.
Emotion labels are read from the events, never hard-coded: the shipped checkpoint may change.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.records import SAMPLE_RATE
from streamer.sources import open_file
from tests.conftest import (
    EXAMPLES,
    json_lines,
    read_tsv,
    run_emostream,
    start_emostream,
    utterances,
    write_audio,
)

MONO = EXAMPLES / "dialogue.wav"
STEREO = EXAMPLES / "dialogue_stereo.flac"
TURNS = read_tsv(EXAMPLES / "dialogue.tsv")  # speaker, start, end, text per turn
BOUNDARY_TOLERANCE_S = 0.3
MAX_WER = 0.25
SIGINT_WAIT_S = 10  # seconds; a heeded SIGINT ends the replay within ~2 s

# What tiny.en (int8, beam 3, repetition penalty 1.1) writes for the turns whose words it gets all
# right: by turn index.
EXACT_TRANSCRIPTS = {
    1: "Oh, that is wonderful. I am so happy we finally did it!",
    2: "Actually no, it failed again. I am really sorry",
    4: "I know, I should have listened. I feel terrible.",
    6: "Thank you, that would be great.",
    7: "Don't worry, we will get it right next time!",
}

UTTERANCE_KEYS = {
    "type", "schema", "id", "speaker", "channel", "start", "end", "text", "emotions", "emotion",
    "confidence", "latency_ms", "context_size", "speaker_revisions", "model", "asr",
}


# --- helpers ------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes kept: "don't")."""
    return re.findall(r"[a-z0-9']+", text.lower())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev_diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev_diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev_diag + (r != h))
    return row[-1]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total word edits over total reference words."""
    edits = sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps, strict=True))
    return edits / sum(len(words(r)) for r in refs)


def test_word_error_rate() -> None:
    assert word_error_rate(["Don't worry, we will."], ["don't WORRY we will"]) == 0
    assert word_error_rate(["a b c d"], ["a x c"]) == 0.5  # one substitution, one deletion
    assert word_error_rate(["a b", "c d"], ["a b e", ""]) == 0.75  # one insertion, two deletions


def file_duration(path: Path) -> float:
    """Seconds of 16 kHz audio the file decodes to."""
    return sum(b.duration for b in open_file(path).blocks(1.0))


def check_schema(records: list[dict[str, Any]], duration: float) -> None:
    """session line, utterance and partial lines, summary line: keys, types, ranges and consistency."""
    session, *lines, summary = records
    assert session["type"] == "session" and session["schema"] == 1
    assert set(session["settings"]) == {"input", "vad", "speakers", "asr", "context", "model", "partials"}
    assert summary["type"] == "summary" and summary["schema"] == 1
    assert {e["type"] for e in lines} <= {"utterance", "partial"}
    events = [e for e in lines if e["type"] == "utterance"]
    final_line = {e["id"]: i for i, e in enumerate(lines) if e["type"] == "utterance"}
    for i, e in enumerate(lines):
        if e["type"] == "partial":  # same keys; before the utterance line that supersedes it
            assert set(e) == UTTERANCE_KEYS and e["speaker"] in ("A", "B", None) and e["text"]
            assert i < final_line.get(e["id"], len(lines))

    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), f"ids not increasing: {ids}"
    labels = None
    for e in events:
        assert set(e) == UTTERANCE_KEYS
        assert e["schema"] == 1
        assert isinstance(e["id"], int) and e["id"] >= 0
        assert e["speaker"] in ("A", "B")
        assert isinstance(e["channel"], int) and e["channel"] in (0, 1)
        assert all(isinstance(e[k], (int, float)) for k in ("start", "end", "confidence", "latency_ms"))
        assert 0 <= e["start"] < e["end"] <= duration + 1e-3
        assert isinstance(e["text"], str) and e["text"] == e["text"].strip()
        probs = e["emotions"]
        assert probs and all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in probs.items())
        assert all(0 <= v <= 1 for v in probs.values())
        assert math.isclose(sum(probs.values()), 1, abs_tol=1e-3)
        assert e["emotion"] == max(probs, key=probs.__getitem__)
        assert e["confidence"] == probs[e["emotion"]]
        assert e["latency_ms"] >= 0
        assert isinstance(e["context_size"], int) and e["context_size"] >= 1
        earlier = ids[: ids.index(e["id"])]
        assert all(r["id"] in earlier and r["speaker"] in ("A", "B") for r in e["speaker_revisions"])
        assert set(e["model"]) >= {"name", "sha256", "labels"}
        assert all(isinstance(v, str) for v in e["model"].values())
        assert set(probs) == set(e["model"]["labels"].split(",")), "emotions are not the checkpoint's labels"
        assert e["asr"]["model"] and all(isinstance(v, str) for v in e["asr"].values())
        labels = labels or list(probs)
        assert list(probs) == labels, "label set changed within a session"

    assert summary["utterances"] == len(events)
    assert math.isclose(summary["duration_s"], duration, abs_tol=0.05)
    assert set(summary["speakers"]) == {e["speaker"] for e in events}
    for name, s in summary["speakers"].items():
        mine = [e for e in events if e["speaker"] == name]
        assert s["utterances"] == len(mine)
        assert math.isclose(s["speaking_time_s"], sum(e["end"] - e["start"] for e in mine), abs_tol=0.01)
        assert set(s["mean_emotions"]) <= set(labels)
        assert math.isclose(sum(s["mean_emotions"].values()), 1, abs_tol=1e-3)
        assert s["dominant_emotion"] == max(s["mean_emotions"], key=s["mean_emotions"].__getitem__)
        assert 0 <= s["emotion_changes"] < s["utterances"]


def check_turns(events: list[dict[str, Any]]) -> None:
    """One event per turn of dialogue.tsv, its boundaries within the tolerance."""
    assert len(events) == len(TURNS), [e["text"] for e in events]
    for event, turn in zip(events, TURNS):
        assert event["start"] == pytest.approx(float(turn["start"]), abs=BOUNDARY_TOLERANCE_S), turn["text"]
        assert event["end"] == pytest.approx(float(turn["end"]), abs=BOUNDARY_TOLERANCE_S), turn["text"]


def run_json(*args: Any) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """`emostream replay ARGS --fast --json --no-display`: exit 0 and every stdout line JSON."""
    done = run_emostream("replay", *args, "--fast", "--json", "--no-display")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json_lines(done.stdout), done


# --- the runs, once each --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plot_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plot") / "emotions.png"


@pytest.fixture(scope="module")
def mono(plot_path: Path) -> list[dict[str, Any]]:
    """The mono example, with --plot (it does not change the events)."""
    return run_json(MONO, "--plot", plot_path)[0]


@pytest.fixture(scope="module")
def stereo() -> list[dict[str, Any]]:
    return run_json(STEREO)[0]


@pytest.fixture(scope="module")
def single_speaker() -> list[dict[str, Any]]:
    """The stereo example with --speakers 1: channel attribution switched off."""
    return run_json(STEREO, "--speakers", "1")[0]


# --- schema, boundaries, transcripts --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("run, path", [("mono", MONO), ("stereo", STEREO), ("single_speaker", STEREO)])
def test_json_schema(run: str, path: Path, request: pytest.FixtureRequest) -> None:
    check_schema(request.getfixturevalue(run), file_duration(path))


@pytest.mark.slow
@pytest.mark.parametrize("run", ["mono", "stereo"])
def test_one_event_per_turn(run: str, request: pytest.FixtureRequest) -> None:
    check_turns(utterances(request.getfixturevalue(run)))


@pytest.mark.slow
@pytest.mark.parametrize("run", ["mono", "stereo"])
def test_transcripts(run: str, request: pytest.FixtureRequest) -> None:
    events = utterances(request.getfixturevalue(run))
    check_turns(events)
    texts = [e["text"] for e in events]
    wer = word_error_rate([t["text"] for t in TURNS], texts)
    assert wer <= MAX_WER, f"WER {wer:.2f}: {texts}"
    assert {i: texts[i] for i in EXACT_TRANSCRIPTS} == EXACT_TRANSCRIPTS


@pytest.mark.slow
def test_session_records_the_settings(mono: list[dict[str, Any]]) -> None:
    settings = mono[0]["settings"]
    assert settings["input"]["fast"] is True
    assert settings["speakers"]["mode"] == "auto"
    assert settings["vad"]["aggressiveness"] == 3


# --- speakers ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stereo_speakers_follow_channels(stereo: list[dict[str, Any]]) -> None:
    events = utterances(stereo)
    check_turns(events)
    assert [(e["channel"], e["speaker"]) for e in events] == [
        ({"A": 0, "B": 1}[t["speaker"]], t["speaker"]) for t in TURNS
    ]


@pytest.mark.slow
def test_one_speaker_flag(single_speaker: list[dict[str, Any]]) -> None:
    events = utterances(single_speaker)
    check_turns(events)
    assert {e["speaker"] for e in events} == {"A"}
    assert {e["channel"] for e in events} == {0, 1}  # both channels still heard
    assert set(single_speaker[-1]["speakers"]) == {"A"}


@pytest.mark.slow
def test_mono_voice_attribution(mono: list[dict[str, Any]]) -> None:
    events = utterances(mono)
    check_turns(events)
    assert {e["channel"] for e in events} == {0}
    right = sum(e["speaker"] == t["speaker"] for e, t in zip(events, TURNS))
    assert right >= 6, [e["speaker"] for e in events]


# --- other outputs and flags -------------------------------------------------------------------------


@pytest.mark.slow
def test_plot_is_a_png(mono: list[dict[str, Any]], plot_path: Path) -> None:
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_path.stat().st_size > 10_000  # a chart, not an empty canvas


@pytest.mark.slow
def test_max_seconds_stops_early() -> None:
    records, _ = run_json(MONO, "--max-seconds", "10")
    check_schema(records, 10.0)
    events = utterances(records)
    assert events and all(e["start"] < 10 for e in events)
    # The turns that start before 10 s, the last one cut at 10 s.
    assert len(events) == sum(float(t["start"]) < 10 for t in TURNS)
    assert records[0]["settings"]["input"]["max_seconds"] == 10


def test_print_config_shows_overrides() -> None:
    done = run_emostream("replay", MONO, "--print-config", "--vad-aggressiveness", "1", "--context", "4")
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["vad"]["aggressiveness"] == 1
    assert settings["context"]["max_utterances"] == 4
    assert settings["asr"]["decoding"]["beam_size"] >= 1  # nested sections printed too


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_no_speech_no_events(kind: str, tmp_path: Path) -> None:
    """5 s of digital silence or of white noise at -20 dBFS: a session, no events, a summary."""
    n = 5 * SAMPLE_RATE
    audio = np.zeros(n, np.float32)
    if kind == "noise":
        audio = np.random.default_rng(7).standard_normal(n).astype(np.float32) * 0.1
    path = write_audio(tmp_path / f"{kind}.wav", audio[:, None], SAMPLE_RATE, "pcm_s16le")
    records, _ = run_json(path)
    assert [r["type"] for r in records] == ["session", "summary"]
    assert records[-1]["utterances"] == 0 and records[-1]["duration_s"] == pytest.approx(5.0, abs=0.01)


@pytest.mark.slow
def test_truncated_file_is_processed(tmp_path: Path) -> None:
    """A WAV cut at 40 % of its bytes: its header still announces the whole dialogue."""
    data = MONO.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    records, done = run_json(cut)
    header = data.index(b"data") + 8  # RIFF header up to the PCM samples
    available = (int(len(data) * 0.4) - header) / 2 / SAMPLE_RATE  # 16-bit mono, seconds
    check_schema(records, available)
    events = utterances(records)
    assert len(events) >= 2
    assert "truncated" in done.stderr


# --- Ctrl-C -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_keeps_the_output_valid(tmp_path: Path) -> None:
    """SIGINT during a real-time replay: exit 130, the lines so far plus a summary, all JSON."""
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = start_emostream("replay", MONO, "--speed", "1", "--json", "--no-display", stderr=stderr)
        watchdog = threading.Timer(120, proc.kill)  # a hung child fails the test instead of the suite
        watchdog.start()
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if json.loads(line)["type"] == "utterance":
                    proc.send_signal(signal.SIGINT)
                    break
            rest, _ = proc.communicate(timeout=SIGINT_WAIT_S)  # a lost SIGINT fails here
        finally:
            watchdog.cancel()
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    records = json_lines("".join(lines) + rest)
    assert records[0]["type"] == "session" and records[-1]["type"] == "summary"
    events = utterances(records)
    assert records[-1]["utterances"] == len(events) >= 1
    # Stopped well before the end of the 31 s dialogue: the signal, not the file, ended it.
    assert records[-1]["duration_s"] < float(TURNS[-1]["start"])
