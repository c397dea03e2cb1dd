"""The live display: a pure render of a state snapshot, checked on a fixed-width capture console."""

from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import replace

import pytest
from rich.console import Console

from streamer.records import Speaker
from streamer.sinks import DisplayState, JsonlSink, LiveDisplaySink, RunState, RuntimeStatus, render, summarize
from streamer.sinks.colours import EMOTION_COLOURS, emotion_colour
from streamer.sinks.display import label_glyphs, timeline_cells
from tests.test_sinks import EVENTS, STATUS, event, run_session

WIDTH = 100


def capture_console() -> Console:
    return Console(file=io.StringIO(), width=WIDTH, force_terminal=False, color_system=None)


def rendered(state: DisplayState) -> str:
    console = capture_console()
    console.print(render(state, WIDTH))
    return console.file.getvalue()


def state_of(events, smoothing: float = 0.5, status: RuntimeStatus | None = STATUS) -> DisplayState:
    state = DisplayState(smoothing=smoothing)
    for e in events:
        state = state.with_event(e)
    return state.with_status(status) if status is not None else state


def speaker_row(text: str, label: str) -> tuple[str, str]:
    """The (speaker A half, speaker B half) of the bar line for `label`."""
    line = next(line for line in text.splitlines() if f"│ {label} " in line)
    return line[: WIDTH // 2], line[WIDTH // 2 :]


def test_render_shows_speakers_bars_transcript_and_status():
    text = rendered(state_of(EVENTS))
    assert "Speaker A" in text and "Speaker B" in text
    # A, smoothing 0.5 over neutral .7/.2/.3, happy .2/.1/0, angry .1/.7/.7:
    #   neutral .5*.3 + .5*(.5*.2 + .5*.7) = .375, happy .075, angry .55; B: its one utterance.
    a_neutral, b_neutral = speaker_row(text, "neutral")
    assert a_neutral.rstrip(" │").endswith("38%") and b_neutral.rstrip(" │").endswith("10%")
    a_angry, b_angry = speaker_row(text, "angry")
    assert a_angry.rstrip(" │").endswith("55%") and b_angry.rstrip(" │").endswith("80%")
    assert "3 utterances, mostly angry" in text and "1 utterance, mostly angry" in text
    for e in EVENTS:
        assert e.text in text
    assert "[neutral 70%]  Hello there, how are you?" in text
    assert "[angry 80%]" in text
    assert "replaying  stream 8.0 s  lag 0.35 s  queue 1  dropped 3  overflows 0" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_bar_length_follows_probability():
    text = rendered(state_of(EVENTS, smoothing=1.0))
    _, b_angry = speaker_row(text, "angry")
    _, b_happy = speaker_row(text, "happy")
    assert b_angry.count("█") > 6 * b_happy.count("█") > 0


def test_smoothing_one_shows_the_latest_utterance():
    state = state_of(EVENTS, smoothing=1.0)
    assert state.current[Speaker.A] == EVENTS[3].emotions
    assert state.current[Speaker.B] == EVENTS[1].emotions


def test_smoothing_is_exponential_per_speaker():
    state = state_of(EVENTS[:3], smoothing=0.25)
    # A: .25 * (.2, .1, .7) + .75 * (.7, .2, .1); B's utterance in between does not count.
    assert state.current[Speaker.A] == pytest.approx({"neutral": 0.575, "happy": 0.175, "angry": 0.25})


def test_with_event_returns_a_new_state():
    empty = DisplayState()
    one = empty.with_event(EVENTS[0])
    assert empty.events == () and empty.current == {} and empty.labels == ()
    assert one.events == (EVENTS[0],) and one.labels == ("neutral", "happy", "angry")
    assert one.with_status(STATUS).status == STATUS and one.status is None


@pytest.mark.parametrize("smoothing", [0.0, 1.5])
def test_smoothing_out_of_range(smoothing):
    with pytest.raises(ValueError):
        DisplayState(smoothing=smoothing)


def test_empty_state_renders():
    text = rendered(DisplayState())
    assert text.count("waiting for speech") == 2
    assert "no utterances yet" in text and "starting" in text


def test_transcript_keeps_the_last_lines():
    events = [event(i, Speaker.A if i % 2 else Speaker.B, i, i + 0.5, f"line number {i:02d}", {"calm": 1.0})
              for i in range(10)]
    text = rendered(state_of(events))
    assert "line number 00" not in text and "line number 01" not in text
    assert all(f"line number {i:02d}" in text for i in range(2, 10))


def test_labels_come_from_the_events():
    events = [event(0, Speaker.A, 0.0, 1.0, "beep", {"zorg": 0.6, "blip": 0.4})]
    text = rendered(state_of(events))
    a_zorg, _ = speaker_row(text, "zorg")
    assert a_zorg.rstrip(" │").endswith("60%")
    assert "[zorg 60%]" in text and "neutral" not in text
    assert emotion_colour("zorg") == emotion_colour("zorg") and "zorg" not in EMOTION_COLOURS
    assert emotion_colour("angry") == EMOTION_COLOURS["angry"]


def test_timeline_cells():
    # 10 s over 10 cells: A speaks 0.5-2.0 (neutral) and 5.0-6.0, 6.5-7.5 (angry)
    cells = timeline_cells(EVENTS, Speaker.A, end_time=10.0, n_cells=10)
    assert cells == ["neutral", "neutral", None, None, None, "angry", "angry", "angry", None, None]
    b = timeline_cells(EVENTS, Speaker.B, end_time=10.0, n_cells=10)
    assert b == [None, None, "angry", "angry", "angry", None, None, None, None, None]
    assert timeline_cells(EVENTS, Speaker.A, end_time=0.0, n_cells=4) == [None] * 4


def test_timeline_cell_goes_to_the_longest_overlap():
    events = [event(0, Speaker.A, 0.0, 0.3, "a", {"sad": 1.0}), event(1, Speaker.A, 0.3, 1.0, "b", {"calm": 1.0})]
    assert timeline_cells(events, Speaker.A, end_time=2.0, n_cells=2) == ["calm", None]


def test_timeline_rendered_rows():
    text = rendered(state_of(EVENTS))
    row_a = next(line for line in text.splitlines() if line.startswith("│ A "))
    row_b = next(line for line in text.splitlines() if line.startswith("│ B "))
    n_cells = WIDTH - 6
    # A speaks 3.5 s of 8 s, B 2 s: cells rounded outwards at both ends of each utterance
    spoken_a, spoken_b = row_a.count("n") + row_a.count("a"), row_b.count("a")  # neutral, angry
    assert 3.5 / 8 * n_cells <= spoken_a <= 3.5 / 8 * n_cells + 6
    assert 2.0 / 8 * n_cells <= spoken_b <= 2.0 / 8 * n_cells + 2
    assert spoken_a + row_a.count("·") == n_cells


def test_timeline_tells_emotions_apart_without_colour():
    """A's first turn is neutral, then angry: told apart by glyph, with the legend saying which."""
    text = rendered(state_of(EVENTS))  # the capture console has no colour at all
    row_a = next(line for line in text.splitlines() if line.startswith("│ A "))
    assert "n" in row_a and "a" in row_a and row_a.index("n") < row_a.index("a")
    assert "n neutral" in text and "h happy" in text and "a angry" in text


def test_label_glyphs_are_distinct():
    labels = ["neutral", "happy", "sad", "surprised", "angry", "annoyed", "a", "aa"]
    glyphs = label_glyphs(labels)
    assert glyphs["neutral"] == "n" and glyphs["sad"] == "s" and glyphs["surprised"] == "u"
    assert len(set(glyphs.values())) == len(labels)


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch):
    """NO_COLOR (https://no-color.org) set: a terminal display without colour codes."""
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="standard")
    console.print(render(state_of(EVENTS), WIDTH))
    drawn = console.file.getvalue()
    assert "\x1b[" in drawn  # still a terminal: bold, reverse, cursor control
    assert not any(f"\x1b[{code}" in drawn for code in ("31m", "38;", "33m", "91m"))  # but no colours


def test_lag_and_drops_are_red():
    state = state_of(EVENTS, status=RuntimeStatus(9.0, 3.0, 5, 2, 1, RunState.LISTENING))
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="standard")
    console.print(render(state, WIDTH))
    status_line = console.file.getvalue().splitlines()[-1]
    assert "listening" in status_line
    assert "\x1b[31m3.00 s" in status_line and "\x1b[31m2" in status_line and "\x1b[31m1" in status_line


def test_live_sink_draws_on_its_console_and_never_on_stdout(capsys):
    console = capture_console()
    run_session(LiveDisplaySink(console, auto_refresh=False))
    drawn = console.file.getvalue()
    assert "Speaker A" in drawn and "That's awful." in drawn and "dropped 3" in drawn
    captured = capsys.readouterr()
    assert captured.out == ""


def test_live_sink_on_a_terminal_never_writes_stdout(capsys):
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="truecolor")
    run_session(LiveDisplaySink(console, auto_refresh=False))
    assert "\x1b[" in console.file.getvalue() and "That's awful." in console.file.getvalue()
    assert capsys.readouterr().out == ""


def test_live_sink_leaves_stdout_to_the_data(capsys):
    """While the display is live on a terminal, stdout still goes to stdout (no redirection)."""
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="truecolor")
    sink = LiveDisplaySink(console, auto_refresh=False)
    sink.header({})
    JsonlSink().emit(EVENTS[0])  # resolves sys.stdout while the display is live
    sink.emit(EVENTS[0])
    sink.close(summarize(EVENTS))
    assert json.loads(capsys.readouterr().out)["text"] == EVENTS[0].text
    assert '"type": "utterance"' not in console.file.getvalue()


def test_live_sink_default_console_is_stderr(capsys):
    sink = LiveDisplaySink()  # auto refresh from its own thread
    run_session(sink)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Hello there, how are you?" in captured.err


def test_live_sink_after_close_draws_nothing():
    console = capture_console()
    sink = LiveDisplaySink(console, auto_refresh=False)
    run_session(sink)
    drawn = console.file.getvalue()
    sink.emit(EVENTS[0])
    assert console.file.getvalue() == drawn
    assert sink.state.events[-1] == EVENTS[0]



def test_a_partial_is_shown_dim_until_its_utterance_arrives():
    from streamer.records import PartialEvent

    final = EVENTS[1]
    partial = PartialEvent(
        id=final.id, speaker=None, channel=final.channel, start=final.start, end=final.start + 1.0,
        text="Je suis", emotions={"neutral": 0.2, "happy": 0.1, "angry": 0.7}, latency_ms=80.0,
        model=final.model, asr=final.asr, context_size=2,
    )
    state = state_of(EVENTS[:1]).with_partial(partial)
    text = rendered(state)
    line = next(line for line in text.splitlines() if "Je suis" in line)
    assert "2.5s" in line and " ? " in line and "[angry?]" in line and "Je suis …" in line
    assert "1 utterance, mostly neutral" in text  # a partial is not an utterance: no bars, no count
    newer = replace(partial, end=final.start + 2.0, text="Je suis furieux")
    state = state.with_partial(newer)
    assert "Je suis furieux …" in rendered(state) and "Je suis …" not in rendered(state)
    text = rendered(state.with_event(final))
    assert "…" not in text.split("Timeline")[0] and final.text in text


def test_the_status_line_says_when_models_are_loading():
    loading = RuntimeStatus(stream_time=0.0, lag_s=1.5, queue_depth=0, dropped_blocks=0, overflows=0,
                            state=RunState.LOADING)
    assert "loading models…  stream 0.0 s  lag 1.50 s" in rendered(state_of([], status=loading))


def test_log_lines_while_live_go_above_the_region(capsys):
    """A log record while the display is live prints through its console (above the region),
    not straight to stderr (which left stale borders behind); the stderr handler comes back."""
    stderr_handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(stderr_handler)
    try:
        console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system=None)
        sink = LiveDisplaySink(console, auto_refresh=False)
        sink.header({})
        logging.getLogger("streamer.sources").warning("recording from 'default' at 44100 Hz")
        assert stderr_handler not in root.handlers
        sink.close(summarize(EVENTS))
        assert "recording from 'default' at 44100 Hz" in console.file.getvalue()
        assert "recording from" not in capsys.readouterr().err
        assert stderr_handler in root.handlers
    finally:
        root.removeHandler(stderr_handler)


def test_a_speaker_revision_moves_the_earlier_line_to_the_other_speaker():
    revising = replace(EVENTS[3], revisions=((2, Speaker.B),))
    state = state_of(EVENTS[:3] + [revising])
    assert [e.speaker for e in state.events] == [Speaker.A, Speaker.B, Speaker.B, Speaker.A]
    line = next(line for line in rendered(state).splitlines() if "Oh no, what happened?" in line)
    assert " B " in line and " A " not in line
