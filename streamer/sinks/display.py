"""The live display on stderr: a pure function of an immutable state snapshot.

:class:`DisplayState` is built incrementally (``state.with_event(e)``, ``state.with_status(s)``
return new states); :func:`render` turns a snapshot into a rich renderable, so the display can
be tested on a fixed-width capture console. :class:`LiveDisplaySink` swaps in a new snapshot per
event and lets ``rich.live.Live`` draw it on stderr; it never touches stdout (the JSON lines).

Each speaker's bars show an exponentially smoothed distribution over that speaker's utterances:
``current = smoothing * newest + (1 - smoothing) * current``, starting from the first
utterance as is. The default smoothing 0.5 halves an utterance's weight with every newer one
from the same speaker, which steadies the bars without hiding a change for long; smoothing 1.0
shows the latest utterance only. The transcript shows each utterance's own (unsmoothed) label.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rich.bar import Bar
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamer.records import EmotionEvent, PartialEvent, Speaker, revised
from streamer.sinks.base import RuntimeStatus
from streamer.sinks.colours import emotion_colour
from streamer.sinks.summary import SessionSummary

LAG_WARN_S = 2.0  # seconds; a processing lag above this is drawn in red
_SILENT = "·"  # timeline cell where the speaker is silent; a spoken cell shows its label's glyph


@dataclass(frozen=True)
class DisplayState:
    """Everything the display shows. Never mutated: the ``with_*`` methods return new states."""

    smoothing: float = 0.5  # weight of the newest utterance in a speaker's bars, in (0, 1]
    transcript_lines: int = 8  # how many recent utterances the transcript shows
    labels: tuple[str, ...] = ()  # every label seen so far, in first-seen order
    current: dict[Speaker, dict[str, float]] = field(default_factory=dict)  # smoothed, per speaker
    events: tuple[EmotionEvent, ...] = ()  # all events, in arrival order
    partials: tuple[PartialEvent, ...] = ()  # the latest interim result per utterance in progress
    status: RuntimeStatus | None = None  # the latest status, None before the first

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")

    def with_event(self, event: EmotionEvent) -> DisplayState:
        labels = self.labels + tuple(label for label in event.emotions if label not in self.labels)
        previous = self.current.get(event.speaker)
        if previous is None:
            smoothed = dict(event.emotions)
        else:
            a = self.smoothing
            smoothed = {
                label: a * event.emotions.get(label, 0.0) + (1.0 - a) * previous.get(label, 0.0)
                for label in labels
            }
        return replace(
            self,
            labels=labels,
            current={**self.current, event.speaker: smoothed},
            # Earlier utterances whose speaker the new evidence changed move to that speaker (their
            # share in the smoothed bars stays where it was counted).
            events=tuple(revised(self.events, event.revisions)) + (event,),
            # The final utterance supersedes its partials; a partial left on its channel was
            # never decided (Whisper judged it no speech) and goes too.
            partials=tuple(p for p in self.partials if p.channel != event.channel),
        )

    def with_partial(self, event: PartialEvent) -> DisplayState:
        """An interim result replaces the previous one of its utterance (and of its channel)."""
        return replace(self, partials=tuple(p for p in self.partials if p.channel != event.channel) + (event,))

    def with_status(self, status: RuntimeStatus) -> DisplayState:
        return replace(self, status=status)

    @property
    def end_time(self) -> float:
        """Seconds of stream the timeline spans: the latest status or utterance end."""
        stream_time = self.status.stream_time if self.status is not None else 0.0
        return max([stream_time, *(e.end for e in self.events)])


def render(state: DisplayState, width: int) -> RenderableType:
    """The whole display for a state snapshot, laid out for a console ``width`` cells wide."""
    return Group(
        _speaker_panels(state, width),
        _transcript(state),
        _timeline(state, width),
        _status_line(state.status),
    )


def _speaker_panels(state: DisplayState, width: int) -> Table:
    grid = Table.grid(expand=True)
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    inner_width = width // 2 - 4  # panel border and padding
    grid.add_row(*(_speaker_panel(state, speaker, inner_width) for speaker in Speaker))
    return grid


def _speaker_panel(state: DisplayState, speaker: Speaker, inner_width: int) -> Panel:
    title = f"Speaker {speaker.value}"
    distribution = state.current.get(speaker)
    if distribution is None:
        return Panel(Text("waiting for speech", style="dim"), title=title)
    label_width = max(len(label) for label in state.labels)
    bar_width = max(4, inner_width - label_width - 6)  # 6: " 100%" and a space
    bars = Table.grid(padding=(0, 1))
    bars.add_column()
    bars.add_column()
    bars.add_column(justify="right")
    for label in state.labels:
        p = distribution.get(label, 0.0)
        colour = emotion_colour(label)
        bars.add_row(
            Text(label, style=colour),
            Bar(size=1.0, begin=0.0, end=p, width=bar_width, color=colour),
            f"{p:.0%}",
        )
    n = sum(e.speaker is speaker for e in state.events)
    dominant = max(distribution, key=distribution.__getitem__)
    noun = "utterance" if n == 1 else "utterances"
    return Panel(bars, title=title, subtitle=f"{n} {noun}, mostly {dominant}")


def _transcript(state: DisplayState) -> Panel:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
    table.add_column(justify="right", no_wrap=True)  # start time
    table.add_column(no_wrap=True)  # speaker
    table.add_column(no_wrap=True)  # emotion tag
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")  # text
    recent = state.events[-state.transcript_lines :]
    for e in recent:
        table.add_row(
            f"{e.start:.1f}s",
            e.speaker.value,
            Text(f"[{e.emotion} {e.confidence:.0%}]", style=emotion_colour(e.emotion)),
            e.text,
        )
    for p in state.partials:  # still being spoken: provisional, drawn dim
        table.add_row(
            Text(f"{p.start:.1f}s", style="dim"),
            Text(p.speaker.value if p.speaker is not None else "?", style="dim"),
            Text(f"[{p.emotion}?]", style=f"dim {emotion_colour(p.emotion)}"),
            Text(f"{p.text} …", style="dim italic"),
        )
    if not recent and not state.partials:
        table.add_row("", "", "", Text("no utterances yet", style="dim"))
    return Panel(table, title="Transcript")


def timeline_cells(
    events: Sequence[EmotionEvent], speaker: Speaker, end_time: float, n_cells: int
) -> list[str | None]:
    """One speaker's timeline: [n_cells] labels, None where the speaker is silent.

    Cell i covers [i, i + 1) * end_time / n_cells seconds and takes the top label of the
    speaker's utterance that overlaps it most.
    """
    cells: list[str | None] = [None] * n_cells
    if end_time <= 0.0:
        return cells
    bucket = end_time / n_cells  # seconds per cell
    best = [0.0] * n_cells  # seconds of overlap of the utterance that owns each cell
    for e in events:
        if e.speaker is not speaker:
            continue
        first = min(int(e.start / bucket), n_cells - 1)
        last = min(int(e.end / bucket), n_cells - 1)
        for i in range(first, last + 1):
            overlap = min(e.end, (i + 1) * bucket) - max(e.start, i * bucket)
            if overlap > best[i]:
                best[i], cells[i] = overlap, e.emotion
    return cells


def label_glyphs(labels: Sequence[str]) -> dict[str, str]:
    """One distinct character per label, so that the timeline reads without colour (NO_COLOR, a
    monochrome terminal, colour blindness): the label's first letter not yet taken, else any of
    its letters in upper case, else a digit. ``["neutral", "happy", "sad", "surprised"]`` ->
    n, h, s, u."""
    glyphs: dict[str, str] = {}
    for label in labels:
        letters = [c for c in label.lower() if c.isalpha()]
        options = [*letters, *(c.upper() for c in letters), *"0123456789"]
        glyphs[label] = next((c for c in options if c not in glyphs.values()), "?")
    return glyphs


def _timeline(state: DisplayState, width: int) -> Panel:
    n_cells = max(10, width - 6)  # panel border and padding, "A " prefix
    glyphs = label_glyphs(state.labels)
    rows = []
    for speaker in Speaker:
        row = Text(f"{speaker.value} ")
        for label in timeline_cells(state.events, speaker, state.end_time, n_cells):
            if label is None:
                row.append(_SILENT, style="dim")
            else:
                row.append(glyphs[label], style=f"bold reverse {emotion_colour(label)}")
        rows.append(row)
    legend = Text("  ").join(
        Text.assemble((glyphs[label], f"bold reverse {emotion_colour(label)}"), f" {label}") for label in state.labels
    )
    title = f"Timeline 0-{state.end_time:.0f} s ({state.end_time / n_cells:.2g} s per cell)"
    return Panel(Group(*rows, legend), title=title)


def _status_line(status: RuntimeStatus | None) -> Text:
    if status is None:
        return Text("starting", style="dim")
    return Text.assemble(
        (status.state.value, "bold"),
        f"  stream {status.stream_time:.1f} s  lag ",
        (f"{status.lag_s:.2f} s", "red" if status.lag_s > LAG_WARN_S else ""),
        f"  queue {status.queue_depth}  dropped ",
        (str(status.dropped_blocks), "red" if status.dropped_blocks else ""),
        "  overflows ",
        (str(status.overflows), "red" if status.overflows else ""),
    )


class LiveDisplaySink:
    """Draws :func:`render` of the current state on stderr with ``rich.live.Live``.

    console: where to draw; default ``Console(stderr=True)``. stdout is never redirected or
    written. auto_refresh: redraw from a background thread ``refresh_per_second`` times a
    second (the thread only reads the latest immutable snapshot); False redraws on every
    event and status instead (deterministic, for tests). ``header`` starts the display and
    ``close`` stops it, leaving the last frame on screen.

    While the display is live, log records that would be written to stderr print through its
    console instead, so they scroll above the live region. Written straight to stderr they
    landed inside the region, which then redrew one line too low and left stale borders behind
    (the "interrupted at ..." line after Ctrl-C, "recording from ..." at the start).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        state: DisplayState | None = None,
        auto_refresh: bool = True,
        refresh_per_second: float = 4.0,
    ) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.state = state if state is not None else DisplayState()
        self._auto_refresh = auto_refresh
        self._closed = False
        self._log_handler = _ConsoleLogHandler(self.console)
        self._muted: list[logging.Handler] = []  # stderr log handlers replaced while live
        self._live = Live(
            console=self.console,
            auto_refresh=auto_refresh,
            refresh_per_second=refresh_per_second,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=lambda: render(self.state, self.console.width),
        )

    def header(self, settings: dict) -> None:
        self._start()

    def emit(self, event: EmotionEvent) -> None:
        self._update(self.state.with_event(event))

    def partial(self, event: PartialEvent) -> None:
        self._update(self.state.with_partial(event))

    def status(self, status: RuntimeStatus) -> None:
        self._update(self.state.with_status(status))

    def close(self, summary: SessionSummary | None) -> None:
        self._closed = True
        self._live.stop()
        root = logging.getLogger()
        root.removeHandler(self._log_handler)
        for handler in self._muted:
            root.addHandler(handler)
        self._muted = []

    def _start(self) -> None:
        """Start drawing (once) and route stderr logging through the console meanwhile."""
        if self._live.is_started:
            return
        root = logging.getLogger()
        self._muted = [h for h in root.handlers if getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)]
        for handler in self._muted:
            root.removeHandler(handler)
        if self._muted:
            self._log_handler.setFormatter(self._muted[0].formatter)
            self._log_handler.setLevel(self._muted[0].level)
        root.addHandler(self._log_handler)
        self._live.start()

    def _update(self, state: DisplayState) -> None:
        self.state = state
        if self._closed:
            return
        self._start()  # a sink driven without header() still draws
        if not self._auto_refresh:
            self._live.refresh()


class _ConsoleLogHandler(logging.Handler):
    """Prints log records through a rich Console: above a live region, never through it."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
