"""The streaming speaker-change decision: a part is closed as soon as the voice after a pause is
heard to be another one, each pause is tested once, and the cuts do not depend on the pace."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models.frontends.speaker import WEIGHTS
from streamer.framing import Framer
from streamer.records import SAMPLE_RATE, Speaker, Utterance
from streamer.segmenter import Segmenter, SegmenterConfig
from streamer.speaker_change import SpeakerChangeConfig, SpeakerChangeDetector
from tests.test_segmenter import MIXED_TURNS, SHORT_PAUSES_S, blocks_of, mixed

needs_campplus = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"CAM++ weights not installed ({WEIGHTS.name})")


class CountingDetector(SpeakerChangeDetector):
    """The real detector, noting each question it was asked: (the stretch's audio, the pause)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[bytes, tuple[int, int]]] = []

    def changed(self, audio: np.ndarray, pause: tuple[int, int]) -> bool:
        self.asked.append((audio.tobytes(), pause))
        return super().changed(audio, pause)


def run(audio: np.ndarray, detector: SpeakerChangeDetector, block_n: int,
        look_ahead: bool) -> list[tuple[Utterance, float]]:
    """Segment ``audio`` in blocks of ``block_n`` samples, asking ``ending()`` after each block
    when ``look_ahead`` (as a paced pipeline does); (utterance, stream time of the block that
    returned it)."""
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0, speaker_change=detector)
    found = []
    for block in blocks_of(audio, block_n):
        found += [(u, block.start + block.duration) for f in framer.feed(block) for u in segmenter.feed(f)]
        if look_ahead:
            segmenter.ending()
    return found + [(u, len(audio) / SAMPLE_RATE) for u in segmenter.flush()]


def test_lookahead_lies_between_the_least_and_the_most_side() -> None:
    with pytest.raises(ValueError, match="min_side_s <= lookahead_s <= window_s"):
        SpeakerChangeConfig(min_side_s=0.8, lookahead_s=0.5)
    with pytest.raises(ValueError, match="min_side_s <= lookahead_s <= window_s"):
        SpeakerChangeConfig(window_s=1.0, lookahead_s=1.2)


@pytest.mark.parametrize("right_s, changed", [(1.0, True), (0.9, False)])
def test_a_side_shorter_than_the_lookahead_needs_the_margin_more(right_s: float, changed: bool) -> None:
    """Sides 0.42 apart: a change over full sides (distance 0.40), none when the side after the
    pause is shorter than lookahead_s (0.40 + short_side_margin 0.05)."""
    apart = np.array([[1.0, 0.0], [0.58, np.sqrt(1 - 0.58**2)]])  # cosine distance 0.42

    def embed_spans(audio: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
        return apart

    detector = SpeakerChangeDetector(SpeakerChangeConfig(distance=0.40, short_side_margin=0.05), embed_spans)
    pause = (round(1.5 * SAMPLE_RATE), round(1.7 * SAMPLE_RATE))
    audio = np.zeros(pause[1] + round(right_s * SAMPLE_RATE), np.float32)
    assert detector.changed(audio, pause) is changed


@needs_campplus
def test_the_part_before_a_change_is_decided_while_the_next_voice_speaks(speak: Callable[..., np.ndarray]) -> None:
    """Two voices, the second answering after 0.12 s (one utterance to the VAD): the first turn
    comes out ``lookahead_s`` into the second one, long before the second one ends."""
    audio, bounds = mixed(speak, MIXED_TURNS[:2], SHORT_PAUSES_S[:1])
    found = run(audio, SpeakerChangeDetector(), 1600, look_ahead=False)
    assert len(found) == 2
    (first, returned), (second, _) = found
    lookahead = SpeakerChangeConfig().lookahead_s
    assert abs(first.end - bounds[0][1]) < 0.15 and abs(second.start - bounds[1][0]) < 0.15
    assert second.voice_change and not first.voice_change
    # decided once lookahead_s of the answer is heard (frames and blocks round it up), not at its end
    assert bounds[1][0] + lookahead - 0.05 <= first.decided_at <= bounds[1][0] + lookahead + 0.15
    assert returned <= first.decided_at + 0.1 < bounds[1][1] - 1.0
    assert first.id < second.id


@needs_campplus
def test_each_pause_is_tested_once_and_the_cuts_do_not_depend_on_the_pace(speak: Callable[..., np.ndarray]) -> None:
    """Fed in 30 ms or 0.3 s blocks, with or without the work-ahead look at the ending
    utterance: the same utterances; a pause is never tested twice on the same audio."""
    audio, bounds = mixed(speak, MIXED_TURNS, SHORT_PAUSES_S)
    runs = {}
    for block_n, look_ahead in ((480, False), (4800, True)):
        detector = CountingDetector()
        runs[block_n] = [(u.id, u.start, u.end, u.voice_change) for u, _ in run(audio, detector, block_n, look_ahead)]
        assert len(detector.asked) == len(set(detector.asked)), detector.asked
    assert runs[480] == runs[4800]
    assert len(runs[480]) == len(bounds)


@pytest.mark.slow
@needs_campplus
def test_the_pipeline_emits_the_first_turn_before_the_merged_segment_ends(recognizer, speak) -> None:
    """Through the whole pipeline at its real-time settings (work ahead, partials polled): the
    first turn's event comes out of ``feed`` while the second voice still speaks; partials
    carry the id and the start of the part they grow into."""
    from streamer.config import Settings
    from streamer.records import AudioBlock
    from streamer.session import make_pipeline

    audio, bounds = mixed(speak, MIXED_TURNS[:2], SHORT_PAUSES_S[:1])
    pipeline = make_pipeline(recognizer.models, Settings(), 1)
    events, partials = [], []
    for i in range(0, len(audio), 1600):
        events += [(e, (i + 1600) / SAMPLE_RATE) for e in pipeline.feed(AudioBlock(audio[i : i + 1600, None], i / SAMPLE_RATE))]
        partials += pipeline.partials()
    events += [(e, len(audio) / SAMPLE_RATE) for e in pipeline.flush()]
    assert [e.speaker for e, _ in events] == [Speaker.A, Speaker.B]
    (first, emitted), (second, _) = events
    assert emitted < bounds[1][1] - 1.0  # the answer goes on for more than a second after it
    assert first.text and second.text
    starts = {e.id: e.start for e, _ in events}
    assert partials and all(starts[p.id] == p.start for p in partials)
