"""The summary as a table on stderr at the end of a session."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from streamer.records import EmotionEvent
from streamer.sinks.base import RuntimeStatus
from streamer.sinks.colours import emotion_colour
from streamer.sinks.summary import SessionSummary


def render_summary(summary: SessionSummary, top_k: int = 3) -> Table:
    """A rich table of the summary, one row per speaker (printed on stderr at the end).

    top_k: how many labels of the mean distribution to list, most probable first.
    """
    noun = "utterance" if summary.utterances == 1 else "utterances"
    table = Table(title=f"Session summary: {summary.duration_s:.1f} s, {summary.utterances} {noun}")
    for header in ("Speaker", "Utterances", "Speaking time", "Dominant", "Changes", "Mean emotions"):
        table.add_column(header, justify="right" if header in ("Utterances", "Changes") else "left")
    for s in summary.speakers:
        top = sorted(s.mean_emotions.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
        table.add_row(
            s.speaker.value,
            str(s.utterances),
            f"{s.speaking_time_s:.1f} s",
            Text(s.dominant_emotion, style=emotion_colour(s.dominant_emotion)),
            str(s.emotion_changes),
            "  ".join(f"{label} {p:.0%}" for label, p in top),
        )
    return table


class SummaryTableSink:
    """Prints :func:`render_summary` when the session closes; ignores everything else.

    console: default ``Console(stderr=True)``, so the table never mixes with the JSON lines. On a
    terminal the table fits its width; redirected (a log file), where rich assumes 80 columns,
    it is printed at its natural width so that rows do not wrap.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=True)

    def header(self, settings: dict) -> None:
        """Nothing to show before the end."""

    def emit(self, event: EmotionEvent) -> None:
        """The summary is computed by the caller from all events."""

    def status(self, status: RuntimeStatus) -> None:
        """Statuses are not summarised."""

    def close(self, summary: SessionSummary | None) -> None:
        if summary is None:
            return
        table = render_summary(summary)
        if self.console.is_terminal:
            self.console.print(table)
            return
        natural = Measurement.get(self.console, self.console.options.update(width=10_000), table).maximum
        width, self.console.width = self.console.width, max(self.console.width, natural)
        try:
            self.console.print(table)
        finally:
            self.console.width = width
