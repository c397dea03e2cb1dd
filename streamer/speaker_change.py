"""Speaker changes inside one utterance: is the voice before a short pause another than after it?

In a conversation the next speaker often answers after a pause shorter than the segmenter's
hangover (in the rendered benchmark dialogues 43 % of speaker changes follow a pause under
0.45 s), and both turns would then arrive as one utterance with one speaker. The segmenter
(``streamer.segmenter``) therefore tests the pauses inside the utterance it is building, each
once, while the stream goes on:

1. A pause of at least ``min_pause_s`` is tested as soon as ``lookahead_s`` of the utterance
   follows it (or, when the utterance ends sooner, at its end, if at least ``min_side_s``
   follows it), and only when at least ``min_side_s`` of the utterance (since its start or the
   last cut) lies before it.
2. The test looks at the stretch from ``window_s`` before the pause (at most back to the start
   of the utterance or the last cut) to the end of what follows it: one CAM++ pass over that
   stretch, its frame-level states pooled on either side of the pause
   (``SpeakerEmbedder.embed_spans``).
3. The voice has changed where the two sides are farther apart than ``distance`` (cosine
   distance), or ``distance + short_side_margin`` when a side holds less than ``lookahead_s``
   of audio (a short turn's embedding is noisier); the segmenter then closes the part before
   the pause at once.

The decision depends on the stretch's audio alone, never on when it was asked for, so a replay
as fast as possible, a paced one and a live stream cut at the same pauses. Settings chosen on
development dialogues of espeak-ng voices that the benchmark's test pairs do not use
(docs/benchmarks.md, "Speaker changes inside an utterance"; the margin for short sides in
round 5, "Speaker attribution").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.records import SAMPLE_RATE

# (audio float32 [n_samples], spans [(start, end) seconds]) -> unit embeddings [n_spans, dim]
SpanEmbedder = Callable[[np.ndarray, list[tuple[float, float]]], np.ndarray]


@dataclass(frozen=True)
class SpeakerChangeConfig:
    """distance: cosine distance between the two sides' embeddings above which the voice has
    changed; short_side_margin: added to ``distance`` when a side holds less than lookahead_s
    of audio; min_side_s: the least audio on each side of a tested pause, seconds; window_s: the
    most audio before a pause that is embedded, seconds; lookahead_s: the audio after a pause
    the test waits for (and embeds), seconds, from min_side_s to window_s; min_pause_s: shorter
    pauses are not tested, seconds."""

    distance: float = 0.41
    short_side_margin: float = 0.05
    min_side_s: float = 0.8
    window_s: float = 1.5
    lookahead_s: float = 1.0
    min_pause_s: float = 0.06

    def __post_init__(self) -> None:
        if not 0 < self.min_side_s <= self.lookahead_s <= self.window_s:
            raise ValueError(f"speaker change needs 0 < min_side_s <= lookahead_s <= window_s, got {self}")


class SpeakerChangeDetector:
    """Stateless: ``changed(audio, pause)`` for the segmenter (``streamer.segmenter.SpeakerChange``).

    embed_spans: None loads CAM++ on first use (``streamer.speakers.shared_embedder``).
    """

    def __init__(self, config: SpeakerChangeConfig = SpeakerChangeConfig(),
                 embed_spans: SpanEmbedder | None = None) -> None:
        self.config = config
        self._embed_spans = embed_spans

    def distance(self, audio: np.ndarray, pause: tuple[int, int]) -> float:
        """Cosine distance between the voices of ``audio`` (float32 [n_samples] at 16 kHz) before
        and after ``pause`` ((start, end) samples into it), from one CAM++ pass over ``audio``."""
        if self._embed_spans is None:
            from streamer.speakers import shared_embedder

            self._embed_spans = shared_embedder().embed_spans
        a, b = pause
        left, right = self._embed_spans(audio, [(0.0, a / SAMPLE_RATE), (b / SAMPLE_RATE, len(audio) / SAMPLE_RATE)])
        return 1.0 - float(left @ right)

    def changed(self, audio: np.ndarray, pause: tuple[int, int]) -> bool:
        """Whether another voice speaks after ``pause`` than before it (module docstring)."""
        a, b = pause
        short = min(a, len(audio) - b) < round(self.config.lookahead_s * SAMPLE_RATE)
        return self.distance(audio, pause) > self.config.distance + (self.config.short_side_margin if short else 0.0)
