"""Interim results and start-up: `partial` events during a long turn, audio kept while models load.

Real models (the session-wide `recognizer` fixture), real espeak-ng speech and the example dialogue.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from streamer.config import Settings
from streamer.pipeline import Pipeline
from streamer.records import SAMPLE_RATE, AudioBlock, Speaker
from streamer.session import LagMeter, load_in_background, make_pipeline, run_session
from streamer.sinks import JsonlSink, MemorySink, RunState, Sinks
from streamer.sources import FastClock, RealTimeClock, open_file, paced
from tests.conftest import EXAMPLES, json_lines, read_tsv, utterances
from tests.test_segmenter import blocks_of, silence

LONG_TURN = (
    "When we finally reached the station the last train had already left, so we walked "
    "all the way home through the rain and talked about everything that went wrong today."
)


@pytest.fixture(scope="module")
def long_turn(speak: Callable[..., np.ndarray]) -> np.ndarray:
    """One espeak-ng sentence of about 9 s between silences, float32 [n] at 16 kHz."""
    return np.concatenate([silence(0.5), speak(LONG_TURN), silence(1.0)])


SPEED = 8.0  # replay pace, times real time


def replay(recognizer, audio: np.ndarray, settings: Settings, speed: float | None = SPEED,
           prepare: Callable[[Pipeline], None] = lambda pipeline: None) -> list[dict]:
    """The JSON lines of a session over ``audio`` paced at ``speed`` (``prepare`` sees the pipeline
    first). Partials are never skipped for lag here (partials.max_lag_s is huge), so their times do
    not depend on the machine."""
    settings = settings.updated({"partials": {"max_lag_s": 1e9}})
    out = io.StringIO()
    pipeline = make_pipeline(recognizer.models, settings, 1)
    prepare(pipeline)
    clock = RealTimeClock(speed) if speed is not None else FastClock()
    run_session(paced(blocks_of(audio), clock), pipeline, Sinks([JsonlSink(out)]), settings, RunState.REPLAYING,
                speed=speed)
    return json_lines(out.getvalue())


@pytest.mark.slow
def test_partials_during_a_long_turn(recognizer, long_turn: np.ndarray) -> None:
    records = replay(recognizer, long_turn, Settings())
    kinds = [r["type"] for r in records]
    (final,) = utterances(records)
    partials = [r for r in records if r["type"] == "partial"]
    assert len(partials) >= 5, kinds  # ~9 s of speech, one partial per second of it at most
    # All before the final line, which supersedes them; the summary counts only the utterance.
    assert kinds == ["session"] + ["partial"] * len(partials) + ["utterance", "summary"]
    assert records[-1]["utterances"] == 1
    assert set(partials[0]) == set(final)  # the same keys as an utterance line
    ends = [p["end"] for p in partials]
    assert all(b - a >= 1.0 - 1e-6 for a, b in zip(ends, ends[1:])), ends  # at most every second
    for p in partials:
        assert p["id"] == final["id"] and p["start"] == final["start"] and p["end"] < final["end"]
        assert p["speaker"] is None  # mono: the voice decides the speaker when the turn ends
        assert p["text"] and abs(sum(p["emotions"].values()) - 1) < 1e-3
        assert p["emotion"] in p["emotions"]
    # The transcript grows: the last partial has most of the final text's words.
    final_words = set(final["text"].lower().replace(",", "").split())
    last_words = partials[-1]["text"].lower().replace(",", "").split()
    assert len(last_words) >= 8 and sum(w in final_words for w in last_words) >= 0.7 * len(last_words)


@pytest.mark.slow
def test_partials_name_a_known_speaker_and_can_be_turned_off(recognizer, long_turn: np.ndarray) -> None:
    single = replay(recognizer, long_turn, Settings().updated({"speakers": {"mode": "single"}}))
    assert {r["speaker"] for r in single if r["type"] == "partial"} == {"A"}
    off = replay(recognizer, long_turn, Settings().updated({"partials": {"every_s": 0.0}}))
    assert [r["type"] for r in off] == ["session", "utterance", "summary"]
    fast = replay(recognizer, long_turn, Settings(), speed=None)  # nobody waits for interim results
    assert [r["type"] for r in fast] == ["session", "utterance", "summary"]


@pytest.mark.slow
def test_partials_take_no_second_encoder_pass(recognizer, long_turn: np.ndarray, monkeypatch) -> None:
    """The default's acoustic vector comes from its own encoder (Whisper base layers), a second
    pass beside the transcriber's: a partial is scored without it, so the growing audio of a long
    turn is not encoded again every second; the final utterance is."""
    encoded_in: list[str] = []  # per encoder pass: "partial" or "final"
    scoring = ["final"]

    def count_passes(pipeline: Pipeline) -> None:
        assert pipeline.feature_encoder is not None
        encode, partial = pipeline.feature_encoder.encode, pipeline._partial

        def partial_of(utterance):
            scoring[0] = "partial"
            try:
                return partial(utterance)
            finally:
                scoring[0] = "final"

        monkeypatch.setattr(pipeline.feature_encoder, "encode", lambda audio: encoded_in.append(scoring[0]) or encode(audio))
        monkeypatch.setattr(pipeline, "_partial", partial_of)

    records = replay(recognizer, long_turn, Settings(), prepare=count_passes)
    assert sum(r["type"] == "partial" for r in records) >= 5 and len(utterances(records)) == 1
    # passes for the final utterance only (also those prepared, then wasted, at the turn's inner pauses)
    assert encoded_in and set(encoded_in) == {"final"}, encoded_in


def releasing(blocks: list[AudioBlock], at_s: float, release: threading.Event) -> Iterator[AudioBlock]:
    """The blocks, with ``release`` set once the stream reaches ``at_s`` seconds (or at its end)."""
    for block in blocks:
        if block.start >= at_s:
            release.set()
        yield block
    release.set()


@pytest.mark.slow
@pytest.mark.parametrize("loaded_at_s", [4.0, float("inf")])
def test_audio_heard_while_the_models_load_is_processed(recognizer, loaded_at_s: float) -> None:
    """A live session starts before its models are ready: what it hears meanwhile is kept and
    transcribed once they are (models ready after 4 s of audio, or only after the stream ended)."""
    turns = read_tsv(EXAMPLES / "dialogue.tsv")[:3]
    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    audio = audio[: round((float(turns[-1]["end"]) + 0.6) * SAMPLE_RATE)]
    settings = Settings().updated({"partials": {"every_s": 0.0}})
    release = threading.Event()

    def load():
        release.wait(60)
        return make_pipeline(recognizer.models, settings, 1)

    memory = MemorySink()
    result = run_session(
        releasing(blocks_of(audio), loaded_at_s, release), load_in_background(load), Sinks([memory]),
        settings, RunState.LISTENING, speed=1.0,
    )
    assert memory.statuses[0].state is RunState.LOADING
    assert len(result.events) == len(turns), [e.text for e in result.events]
    heard = " ".join(e.text for e in result.events).lower()
    for word in ("sarah", "results", "wonderful", "finally", "failed", "sorry"):
        assert word in heard, heard
    assert [e.speaker for e in result.events] == [Speaker.A, Speaker.B, Speaker.A]
    assert memory.summary.duration_s == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.11)


def test_a_loading_error_reaches_the_session(recognizer) -> None:
    from streamer.errors import UserError

    def load():
        raise UserError("no such checkpoint")

    with pytest.raises(UserError, match="no such checkpoint"):
        run_session(blocks_of(silence(1.0)), load_in_background(load), Sinks([MemorySink()]), Settings(),
                    RunState.LISTENING, speed=1.0)


def test_lag_counts_from_the_first_block_not_from_the_session_start() -> None:
    """An input that takes a while to deliver its first audio is not behind (the old constant
    `lag 2.05 s` on an idle input); one whose audio waits unprocessed is."""
    meter = LagMeter(speed=1.0)
    time.sleep(0.3)  # the device opening
    meter.arrived(AudioBlock(np.zeros((1600, 1), np.float32), 0.0))
    assert meter.behind(processed_until=0.1) < 0.05
    time.sleep(0.2)
    assert meter.behind(processed_until=0.1) == pytest.approx(0.2, abs=0.05)
    assert LagMeter(speed=None).behind(0.0) == 0.0


@pytest.mark.parametrize("text, expected", [
    ("Okay, let's... Okay, let's... Okay, let's", "Okay, let's..."),
    ("Thank you, Captain. Thank you, Captain. Thank you, Captain", "Thank you, Captain."),
    ("I told you to check the same.", "I told you to check the same."),
    ("no no, that is not it", "no no, that is not it"),  # one word repeated is speech, not a loop
    ("", ""),
])
def test_a_looping_partial_transcript_is_cut(text: str, expected: str) -> None:
    from streamer.pipeline import cut_repetition

    assert cut_repetition(text) == expected
