"""Speaker changes inside one utterance: cut where the voice on either side of a short pause differs.

In a conversation the next speaker often answers after a pause shorter than the segmenter's
hangover (in the rendered benchmark dialogues 43 % of speaker changes follow a pause under
0.45 s), and both turns then arrive as one utterance with one speaker. The segmenter hands each
utterance it decides, with its internal pauses, to ``SpeakerChangeDetector.cuts``:

1. A pause is a candidate when at least ``min_side_s`` of audio lies on each side of it within
   the utterance (a shorter stretch gives no reliable voice print).
2. For each candidate, CAM++ embeddings of the ``window_s`` before and after it (cut at the
   utterance's edges) come from one network pass over the whole utterance
   (``SpeakerEmbedder.embed_spans``: pooling per stretch, no pass per candidate).
3. Candidates whose two sides are farther apart than ``distance`` (cosine distance) are taken,
   the farthest first, each at least ``min_side_s`` from the utterance's edges and from the
   cuts already taken (so a turn is cut once, at its clearest pause).

Nothing is computed for an utterance without a candidate. The settings are chosen on
development dialogues of espeak-ng voices that the benchmark's test pairs do not use, and on
single-voice streams (docs/benchmarks.md, "Speaker attribution").
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
    changed; min_side_s: the least audio on each side of a cut, seconds; window_s: the most
    audio on each side that is embedded, seconds."""

    distance: float = 0.45
    min_side_s: float = 0.8
    window_s: float = 1.5


class SpeakerChangeDetector:
    """Stateless: ``cuts(audio, pauses)`` for the segmenter (``streamer.segmenter.SpeakerChange``).

    embed_spans: None loads CAM++ on first use (``streamer.speakers.shared_embedder``).
    """

    def __init__(self, config: SpeakerChangeConfig = SpeakerChangeConfig(),
                 embed_spans: SpanEmbedder | None = None) -> None:
        self.config = config
        self._embed_spans = embed_spans

    def distances(self, audio: np.ndarray, pauses: list[tuple[int, int]]) -> dict[int, float]:
        """Cosine distance between the voices either side of each candidate pause, by its index
        into ``pauses`` ((start, end) sample spans in ``audio``); pauses too near an edge are left out."""
        min_side, window = (round(x * SAMPLE_RATE) for x in (self.config.min_side_s, self.config.window_s))
        candidates = [i for i, (a, b) in enumerate(pauses) if a >= min_side and len(audio) - b >= min_side]
        if not candidates:
            return {}
        if self._embed_spans is None:
            from streamer.speakers import shared_embedder

            self._embed_spans = shared_embedder().embed_spans
        spans = []
        for i in candidates:
            a, b = pauses[i]
            spans += [(max(0, a - window) / SAMPLE_RATE, a / SAMPLE_RATE), (b / SAMPLE_RATE, min(len(audio), b + window) / SAMPLE_RATE)]
        embeddings = self._embed_spans(audio, spans)  # [2 * n_candidates, dim], unit rows
        left, right = embeddings[0::2], embeddings[1::2]
        return {i: 1.0 - float(l @ r) for i, l, r in zip(candidates, left, right)}

    def cuts(self, audio: np.ndarray, pauses: list[tuple[int, int]]) -> list[int]:
        """Indices into ``pauses`` to cut ``audio`` at, ascending (module docstring)."""
        min_side = self.config.min_side_s * SAMPLE_RATE
        taken: list[int] = []
        distances = self.distances(audio, pauses)
        for i in sorted(distances, key=distances.get, reverse=True):
            if distances[i] <= self.config.distance:
                break
            middle = sum(pauses[i]) / 2
            if all(abs(middle - sum(pauses[j]) / 2) >= min_side for j in taken):
                taken.append(i)
        return sorted(taken)
