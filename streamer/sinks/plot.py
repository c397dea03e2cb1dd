"""Emotion-over-time chart of a session (``--plot FILE.png``).

Drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas: no pyplot, no global backend
switch, nothing changed for other modules that use matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.color import Color

from streamer.errors import UserError
from streamer.records import EmotionEvent, Speaker
from streamer.sinks.colours import emotion_colour


def write_plot(events: Sequence[EmotionEvent], path: Path) -> None:
    """Write one subplot per speaker: each label's probability at each utterance's midpoint.

    x: stream time in seconds, y: probability in [0, 1]. The format follows the file suffix
    (png, pdf, svg, ...). Raises UserError if the file cannot be written.
    """
    path = Path(path)
    speakers = [s for s in Speaker if any(e.speaker is s for e in events)]
    labels = list(dict.fromkeys(label for e in events for label in e.emotions))
    fig = Figure(figsize=(10.0, 1.0 + 2.5 * max(1, len(speakers))), layout="constrained")
    FigureCanvasAgg(fig)
    if not speakers:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no utterances", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        axes = fig.subplots(len(speakers), 1, sharex=True, squeeze=False)[:, 0]
        for ax, speaker in zip(axes, speakers):
            mine = sorted((e for e in events if e.speaker is speaker), key=lambda e: e.start)
            midpoints = [(e.start + e.end) / 2 for e in mine]  # seconds
            for label in labels:
                ax.plot(
                    midpoints,
                    [e.emotions.get(label, 0.0) for e in mine],
                    marker="o",
                    markersize=3,
                    color=_matplotlib_colour(label),
                    label=label,
                )
            ax.set_ylim(0.0, 1.0)
            ax.set_ylabel(f"Speaker {speaker.value}\nprobability")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        axes[-1].set_xlabel("stream time (s)")
        axes[-1].set_xlim(left=0.0)
    try:
        fig.savefig(path)
    except OSError as e:
        raise UserError(f"cannot write the plot to {path}: {e.strerror or e}") from e
    except ValueError as e:  # unsupported file suffix
        raise UserError(f"cannot write the plot to {path}: {e}") from e


def _matplotlib_colour(label: str) -> str:
    """The display's colour for a label, as a hex string matplotlib understands."""
    return Color.parse(emotion_colour(label)).get_truecolor().hex
