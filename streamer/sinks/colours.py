"""One colour per emotion label, shared by the live display, the summary table and the plot."""

from __future__ import annotations

import zlib

from models.labels import Emotion

# rich colour names for the canonical emotions; labels not listed here get a fallback colour.
EMOTION_COLOURS: dict[str, str] = {
    Emotion.NEUTRAL.value: "grey62",
    Emotion.HAPPY.value: "gold1",
    Emotion.EXCITED.value: "orange1",
    Emotion.SAD.value: "dodger_blue2",
    Emotion.ANGRY.value: "red3",
    Emotion.FRUSTRATED.value: "dark_orange3",
    Emotion.SURPRISED.value: "magenta",
    Emotion.FEARFUL.value: "medium_purple",
    Emotion.DISGUSTED.value: "green4",
    Emotion.BORED.value: "grey37",
    Emotion.CALM.value: "cyan3",
}
_FALLBACK_COLOURS = ("turquoise2", "deep_pink3", "chartreuse3", "steel_blue1", "khaki3", "plum2")


def emotion_colour(label: str) -> str:
    """The rich colour name for a label; unknown labels get a colour stable across runs."""
    fallback = _FALLBACK_COLOURS[zlib.crc32(label.encode()) % len(_FALLBACK_COLOURS)]
    return EMOTION_COLOURS.get(label, fallback)
