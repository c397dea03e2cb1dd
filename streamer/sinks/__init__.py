"""Outputs of a session: JSON lines (stdout), live display and summary table (stderr), memory.

``write_plot`` lives in :mod:`streamer.sinks.plot` so that matplotlib is imported only when a
plot is asked for.
"""

from streamer.sinks.base import RunState, RuntimeStatus, Sink, Sinks
from streamer.sinks.colours import emotion_colour
from streamer.sinks.display import DisplayState, LiveDisplaySink, render
from streamer.sinks.jsonl import JsonlSink
from streamer.sinks.memory import MemorySink
from streamer.sinks.summary import SessionSummary, SpeakerSummary, summarize
from streamer.sinks.summary_table import SummaryTableSink, render_summary

__all__ = [
    "DisplayState",
    "JsonlSink",
    "LiveDisplaySink",
    "MemorySink",
    "RunState",
    "RuntimeStatus",
    "SessionSummary",
    "Sink",
    "Sinks",
    "SpeakerSummary",
    "SummaryTableSink",
    "emotion_colour",
    "render",
    "render_summary",
    "summarize",
]
