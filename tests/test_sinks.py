"""JSON-lines, memory, fan-out, summary and plot sinks, on fabricated events (not model output)."""

from __future__ import annotations

import io
import json
import logging
import os
import select
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from streamer.errors import UserError
from streamer.records import EmotionEvent, Speaker
from streamer.sinks import (
    JsonlSink,
    MemorySink,
    RunState,
    RuntimeStatus,
    Sinks,
    SummaryTableSink,
    render_summary,
    summarize,
)
from streamer.sinks.plot import write_plot

REPO = Path(__file__).resolve().parents[1]


def event(
    i: int, speaker: Speaker, start: float, end: float, text: str, emotions: dict[str, float]
) -> EmotionEvent:
    """A fabricated scored utterance (times in seconds)."""
    return EmotionEvent(
        id=i,
        speaker=speaker,
        channel=0 if speaker is Speaker.A else 1,
        start=start,
        end=end,
        text=text,
        emotions=emotions,
        latency_ms=123.45,
        model={"name": "fusion-test", "sha256": "0" * 64},
        asr={"name": "tiny.en"},
        context_size=i + 1,
    )


EVENTS = [
    event(0, Speaker.A, 0.5, 2.0, "Hello there, how are you?", {"neutral": 0.7, "happy": 0.2, "angry": 0.1}),
    event(1, Speaker.B, 2.5, 4.5, "Je suis furieux, café fermé!", {"neutral": 0.1, "happy": 0.1, "angry": 0.8}),
    event(2, Speaker.A, 5.0, 6.0, "Oh no, what happened?", {"neutral": 0.2, "happy": 0.1, "angry": 0.7}),
    event(3, Speaker.A, 6.5, 7.5, "That's awful.", {"neutral": 0.3, "happy": 0.0, "angry": 0.7}),
]
STATUS = RuntimeStatus(
    stream_time=8.0, lag_s=0.35, queue_depth=1, dropped_blocks=3, overflows=0, state=RunState.REPLAYING
)


def run_session(sink, events=EVENTS, settings=None) -> None:
    sink.header(settings if settings is not None else {"device": "cpu"})
    for e in events:
        sink.emit(e)
    sink.status(STATUS)
    sink.close(summarize(events))


# --- JSON lines ---------------------------------------------------------------------------


def test_jsonl_lines_parse_with_schema_keys():
    out = io.StringIO()
    settings = {"model": Path("/ckpt/fusion.pt"), "state": RunState.LISTENING, "vad": {"aggressiveness": 2}}
    run_session(JsonlSink(out), settings=settings)
    lines = out.getvalue().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["type"] for o in objs] == ["session", "utterance", "utterance", "utterance", "utterance", "summary"]
    assert all(o["schema"] == 1 for o in objs)
    assert objs[0]["settings"] == {"model": "/ckpt/fusion.pt", "state": "listening", "vad": {"aggressiveness": 2}}
    utterance_keys = {"id", "speaker", "channel", "start", "end", "text", "emotions", "emotion", "confidence",
                      "latency_ms", "context_size", "model", "asr"}
    assert all(utterance_keys <= o.keys() for o in objs[1:5])
    assert objs[2]["speaker"] == "B" and objs[2]["emotion"] == "angry" and objs[2]["confidence"] == 0.8
    assert objs[5]["speakers"]["A"]["utterances"] == 3
    # ensure_ascii=False: non-ASCII text is written as is
    assert "Je suis furieux, café fermé!" in lines[2]


def test_jsonl_status_writes_nothing():
    out = io.StringIO()
    JsonlSink(out).status(STATUS)
    assert out.getvalue() == ""


def test_jsonl_rejects_nan_instead_of_writing_invalid_json():
    out = io.StringIO()
    with pytest.raises(ValueError):
        JsonlSink(out).emit(event(0, Speaker.A, 0.0, 1.0, "x", {"neutral": float("nan")}))
    assert out.getvalue() == ""


def test_jsonl_default_stream_is_stdout_at_construction(capsys):
    JsonlSink().emit(EVENTS[0])
    assert json.loads(capsys.readouterr().out)["text"] == "Hello there, how are you?"


def test_jsonl_flushes_every_line_through_a_pipe():
    """A block-buffered pipe shows each line to the reader only if the sink flushed it."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w", encoding="utf-8", buffering=1 << 16) as writer:
        sink = JsonlSink(writer)
        for e in EVENTS:
            sink.emit(e)
            readable, _, _ = select.select([read_fd], [], [], 0)
            assert readable, "line not flushed"
            line = os.read(read_fd, 1 << 16).decode("utf-8")
            assert line.endswith("\n") and line.count("\n") == 1
            assert json.loads(line)["id"] == e.id
    os.close(read_fd)


def test_jsonl_broken_pipe_is_quiet_and_stops_writing(caplog):
    caplog.set_level(logging.INFO, logger="streamer.sinks.jsonl")
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader went away (like `| head` after its lines)
    writer = os.fdopen(write_fd, "w", encoding="utf-8")
    sink = JsonlSink(writer)
    assert not sink.reader_gone
    sink.emit(EVENTS[0])  # must not raise
    assert sink.reader_gone
    run_session(sink)  # later calls are no-ops
    writer.write("flushing at exit must not raise either\n")
    writer.close()
    assert "reader closed the pipe" in caplog.text


def test_jsonl_piped_into_head_exits_without_traceback():
    """The real case: a process writing JSON lines to stdout whose reader closes early."""
    child = (
        "from tests.test_sinks import EVENTS\n"
        "from streamer.sinks import JsonlSink\n"
        "sink = JsonlSink()\n"
        "while not sink.reader_gone:\n"
        "    sink.emit(EVENTS[0])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 0
    assert json.loads(first)["type"] == "utterance"
    assert stderr == ""


# --- memory and fan-out -------------------------------------------------------------------


def test_sinks_fan_out_every_call_to_every_sink():
    first, second = MemorySink(), MemorySink()
    run_session(Sinks([first, second]), settings={"k": 1})
    for sink in (first, second):
        assert sink.settings == {"k": 1}
        assert sink.events == EVENTS
        assert sink.statuses == [STATUS]
        assert sink.summary == summarize(EVENTS)


# --- summary ------------------------------------------------------------------------------


def test_summary_numbers_on_known_events():
    summary = summarize(list(reversed(EVENTS)))  # order of arrival does not matter
    assert summary.utterances == 4
    assert summary.duration_s == 7.5  # end of the last utterance
    a, b = summary.speakers
    assert a.speaker is Speaker.A and b.speaker is Speaker.B
    assert a.utterances == 3 and b.utterances == 1
    assert a.speaking_time_s == pytest.approx(1.5 + 1.0 + 1.0)
    assert b.speaking_time_s == pytest.approx(2.0)
    assert a.mean_emotions == pytest.approx({"neutral": 0.4, "happy": 0.1, "angry": 0.5})
    assert a.dominant_emotion == "angry"
    assert a.emotion_changes == 1  # neutral -> angry -> angry
    assert b.emotion_changes == 0 and b.dominant_emotion == "angry"


def test_summary_counts_each_utterance_under_its_latest_speaker():
    # utterance 3 moves utterance 2 to B; utterance 4 moves it back and moves 3 to B
    revising = [replace(EVENTS[3], revisions=((2, Speaker.B),)),
                replace(event(4, Speaker.B, 8.0, 9.0, "Sure.", {"neutral": 1.0}),
                        revisions=((2, Speaker.A), (3, Speaker.B)))]
    a, b = summarize(EVENTS[:3] + revising).speakers
    assert (a.utterances, b.utterances) == (2, 3)
    assert b.speaking_time_s == pytest.approx(2.0 + 1.0 + 1.0)
    line = json.loads(json.dumps(revising[1].to_dict()))
    assert line["speaker_revisions"] == [{"id": 2, "speaker": "A"}, {"id": 3, "speaker": "B"}]
    assert EVENTS[0].to_dict()["speaker_revisions"] == []


def test_summary_duration_from_caller_and_empty_session():
    assert summarize(EVENTS, duration_s=12.0).duration_s == 12.0
    empty = summarize([])
    assert (empty.duration_s, empty.utterances, empty.speakers) == (0.0, 0, ())
    assert empty.to_dict() == {"type": "summary", "schema": 1, "duration_s": 0.0, "utterances": 0, "speakers": {}}


def test_summary_labels_missing_from_some_events_count_as_zero():
    events = [event(0, Speaker.B, 0.0, 1.0, "a", {"sad": 1.0}), event(1, Speaker.B, 1.0, 2.0, "b", {"calm": 1.0})]
    (b,) = summarize(events).speakers
    assert b.mean_emotions == pytest.approx({"sad": 0.5, "calm": 0.5})
    assert b.emotion_changes == 1


def test_summary_to_dict_is_json():
    d = json.loads(json.dumps(summarize(EVENTS).to_dict()))
    assert d["speakers"]["A"] == {
        "utterances": 3,
        "speaking_time_s": 3.5,
        "mean_emotions": {"neutral": 0.4, "happy": 0.1, "angry": 0.5},
        "dominant_emotion": "angry",
        "emotion_changes": 1,
    }


def test_render_summary_table():
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    console.print(render_summary(summarize(EVENTS)))
    text = console.file.getvalue()
    assert "Session summary: 7.5 s, 4 utterances" in text
    assert "3.5 s" in text and "angry 50%" in text and "neutral 40%" in text


def test_summary_table_sink_prints_on_close_only(capsys):
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    sink = SummaryTableSink(console)
    sink.header({})
    sink.emit(EVENTS[0])
    sink.status(STATUS)
    assert console.file.getvalue() == ""
    sink.close(summarize(EVENTS))
    assert "Session summary" in console.file.getvalue()
    assert capsys.readouterr().out == ""


# --- plot ---------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_png(tmp_path):
    path = tmp_path / "emotions.png"
    write_plot(EVENTS, path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_plot_without_events_still_writes(tmp_path):
    path = tmp_path / "empty.png"
    write_plot([], path)
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("name", ["missing-dir/plot.png", "plot.unknownformat"])
def test_plot_bad_path_is_user_error(tmp_path, name):
    with pytest.raises(UserError, match="cannot write the plot"):
        write_plot(EVENTS, tmp_path / name)


def test_plot_leaves_pyplot_alone(tmp_path):
    """No global matplotlib state: pyplot is never imported, the backend never switched."""
    child = (
        "import sys, matplotlib\n"
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')  # plain read: no auto-resolve\n"
        "from pathlib import Path\n"
        "from tests.test_sinks import EVENTS\n"
        "from streamer.sinks.plot import write_plot\n"
        f"write_plot(EVENTS, Path({str(tmp_path / 'p.png')!r}))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend\n"
    )
    subprocess.run([sys.executable, "-c", child], cwd=REPO, check=True)


def test_summary_table_says_1_utterance():
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    console.print(render_summary(summarize(EVENTS[:1])))
    assert "Session summary: 2.0 s, 1 utterance\n" in console.file.getvalue().replace(" \n", "\n").replace("  ", "")


def test_summary_table_redirected_does_not_wrap():
    """Redirected (not a terminal) rich assumes 80 columns; the table keeps one line per row."""
    console = Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)
    many = [event(i, Speaker.A, i, i + 0.5, "x", {f"label{k}": 0.2 for k in range(5)}) for i in range(3)]
    SummaryTableSink(console).close(summarize(many))
    rows = [line for line in console.file.getvalue().splitlines() if line.startswith("│")]
    assert len(rows) == 1  # speaker A, unwrapped
    assert "label0 20%  label1 20%  label2 20%" in rows[0]
