"""Framing arithmetic and webrtcvad segmentation on real speech, silence and noise."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import UserError
from streamer.framing import Framer, to_pcm16
from streamer.records import SAMPLE_RATE, AudioBlock, Utterance
from models.frontends.speaker import WEIGHTS
from streamer.segmenter import Segmenter, SegmenterConfig, VoiceDetector, internal_pauses
from streamer.sources import open_file
from streamer.speaker_change import SpeakerChangeDetector
from tests.conftest import EXAMPLES

TOLERANCE_S = 0.15  # utterance boundary vs ground truth
needs_campplus = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"CAM++ weights not installed ({WEIGHTS.name})")


def blocks_of(audio: np.ndarray, block_n: int = 1600) -> list[AudioBlock]:
    """float32 [n] or [n, channels] -> AudioBlocks of block_n samples."""
    audio = audio.reshape(len(audio), -1)
    return [AudioBlock(audio[i : i + block_n], i / SAMPLE_RATE) for i in range(0, len(audio), block_n)]


def segment(audio: np.ndarray, config: SegmenterConfig = SegmenterConfig()) -> list[Utterance]:
    """Run Framer + Segmenter over mono float32 [n] audio; utterances in decision order."""
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0)
    found = []
    for block in blocks_of(audio):
        for frame in framer.feed(block):
            found += segmenter.feed(frame)
    return found + segmenter.flush()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


def assert_boundaries(found: list[Utterance], truth: list[tuple[float, float]]) -> None:
    assert len(found) == len(truth), [(round(u.start, 2), round(u.end, 2)) for u in found]
    for utterance, (start, end) in zip(found, truth):
        assert utterance.start == pytest.approx(start, abs=TOLERANCE_S)
        assert utterance.end == pytest.approx(end, abs=TOLERANCE_S)


# --- framing ------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=25),
    origin_n=st.integers(min_value=0, max_value=10**7),
    frame_ms=st.sampled_from([10, 20, 30]),
)
def test_frames_are_contiguous_and_exactly_timed(sizes: list[int], origin_n: int, frame_ms: int) -> None:
    rng = np.random.default_rng(len(sizes))
    audio = rng.uniform(-1, 1, (sum(sizes), 2)).astype(np.float32)
    origin = origin_n / SAMPLE_RATE
    framer = Framer(channel=1, frame_ms=frame_ms)
    frames, offset = [], 0
    for size in sizes:
        frames += framer.feed(AudioBlock(audio[offset : offset + size], origin + offset / SAMPLE_RATE))
        offset += size
    frame_n = SAMPLE_RATE * frame_ms // 1000
    assert len(frames) == len(audio) // frame_n
    for k, frame in enumerate(frames):
        assert frame.channel == 1 and len(frame.pcm) == frame_n
        assert frame.start == pytest.approx(origin + k * frame_n / SAMPLE_RATE, abs=1e-9)
    for before, after in itertools.pairwise(frames):
        assert after.start == pytest.approx(before.end, abs=1e-9)
    if frames:
        expected = to_pcm16(audio[: len(frames) * frame_n, 1])
        assert np.array_equal(np.concatenate([f.pcm for f in frames]), expected)


def test_framer_rejects_a_gap_between_blocks() -> None:
    framer = Framer()
    framer.feed(AudioBlock(np.zeros((1600, 1), np.float32), 0.0))
    with pytest.raises(ValueError, match="contiguous"):
        framer.feed(AudioBlock(np.zeros((1600, 1), np.float32), 0.2))


def test_pcm16_conversion_clips() -> None:
    assert to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0])).tolist() == [
        -32768, -32768, 0, 16384, 32767, 32767
    ]


# --- VAD decisions ------------------------------------------------------------------------------

# 30 ms frames of examples/dialogue.wav from 2.4 s to 4.2 s: the end of turn 1 (speaker A,
# ends at 3.088 s) and the start of turn 2 (speaker B, starts at 3.788 s).
EXPECTED_VAD = {
    0: "111111111111111111111111111110000000000000000011111111111111",
    1: "111111111111111111111111111110000000000000000011111111111111",
    2: "111111111111111111111111110000000000000000000011111111111111",
    3: "011111111111111111111111110000000000000000000011111111111111",
}


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_vad_frame_decisions_per_aggressiveness(aggressiveness: int) -> None:
    framer, vad = Framer(0, 30), VoiceDetector(aggressiveness)
    decisions = ""
    for block in open_file(EXAMPLES / "dialogue.wav").blocks():
        for frame in framer.feed(block):
            if 2.4 - 1e-9 <= frame.start and frame.end <= 4.2 + 1e-9:
                decisions += "1" if vad.is_speech(frame) else "0"
    assert decisions == EXPECTED_VAD[aggressiveness]


# --- segmentation -------------------------------------------------------------------------------


def test_example_dialogue_turns(dialogue_truth: list[tuple[str, float, float]]) -> None:
    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    assert_boundaries(segment(audio), [(start, end) for _, start, end in dialogue_truth])


def test_stereo_dialogue_one_segmenter_per_channel(dialogue_truth: list[tuple[str, float, float]]) -> None:
    """Speaker A on channel 0, B on channel 1; ids from one shared counter follow decision order."""
    config, ids = SegmenterConfig(), itertools.count()
    framers = [Framer(c, config.frame_ms) for c in (0, 1)]
    segmenters = [Segmenter(config, c, ids) for c in (0, 1)]
    found: list[Utterance] = []
    for block in open_file(EXAMPLES / "dialogue_stereo.flac").blocks():
        for framer, segmenter in zip(framers, segmenters):
            for frame in framer.feed(block):
                found += segmenter.feed(frame)
    for segmenter in segmenters:
        found += segmenter.flush()
    assert [u.id for u in found] == list(range(len(dialogue_truth)))
    assert [u.channel for u in found] == [0 if speaker == "A" else 1 for speaker, _, _ in dialogue_truth]
    assert_boundaries(found, [(start, end) for _, start, end in dialogue_truth])


def test_generated_speech_silence_and_noise(speak: Callable[..., np.ndarray], noise) -> None:
    """Three sentences at known times, separated by digital silence and by low noise."""
    first = speak("The meeting starts at ten o'clock.")
    second = speak("Please bring the quarterly report.", "en-us+f3")
    third = speak("I am really tired of waiting.")
    parts = [silence(0.5), first, silence(0.8), second, noise(1.0, -50), third, silence(0.7)]
    starts = np.cumsum([0] + [len(p) for p in parts]) / SAMPLE_RATE
    truth = [(starts[i], starts[i + 1]) for i in (1, 3, 5)]
    found = segment(np.concatenate(parts))
    assert_boundaries(found, truth)
    for utterance in found:
        assert len(utterance.audio) == round(utterance.duration * SAMPLE_RATE)
        assert utterance.decided_at == pytest.approx(utterance.end + 0.42)  # hangover: 14 frames


@pytest.mark.parametrize("dbfs", [None, -50, -40, -30])
def test_silence_and_noise_alone_give_no_utterance(noise, dbfs: float | None) -> None:
    audio = silence(10.0) if dbfs is None else noise(10.0, dbfs)
    assert segment(audio) == []


def test_click_shorter_than_min_speech_is_dropped(speak: Callable[..., np.ndarray]) -> None:
    speech = speak("Ah.")
    voiced = speech[np.argmax(np.abs(speech)) - 800 :][:1600]  # 100 ms around the loudest sample
    audio = np.concatenate([silence(1.0), voiced, silence(1.0)])
    assert segment(audio) == []
    assert len(segment(audio, SegmenterConfig(min_speech_ms=0))) == 1  # the filter did the dropping


def test_speech_running_to_the_end_is_flushed(speak: Callable[..., np.ndarray]) -> None:
    speech = speak("This recording stops in the middle of a sentence")
    found = segment(np.concatenate([silence(0.5), speech]))
    assert len(found) == 1
    assert found[0].decided_at == pytest.approx(found[0].end)  # decided by the end of the stream


def test_long_monologue_is_split_at_quiet_frames(speak: Callable[..., np.ndarray]) -> None:
    """~16 s of speech with pauses shorter than the hangover: split near max_utterance_s."""
    sentences = [
        "Let me tell you about the project.",
        "We started three years ago with a small team.",
        "At first nobody believed it would work.",
        "Then the first results came in and everything changed.",
        "Now we have customers in twelve countries.",
        "And next year we plan to open two more offices.",
    ]
    parts = [silence(0.3)]
    for text in sentences:
        parts += [speak(text), silence(0.25)]
    audio = np.concatenate(parts)
    config = SegmenterConfig(max_utterance_s=5.0, split_search_ms=1500)
    found = segment(audio, config)
    assert len(audio) / SAMPLE_RATE > 15 and len(found) >= 3
    for utterance in found:
        assert utterance.duration <= config.max_utterance_s + 1e-9
    for before, after in itertools.pairwise(found):
        assert after.start == pytest.approx(before.end)  # split, not a pause: nothing lost
        cut = round(before.end * SAMPLE_RATE)
        cut_rms = np.sqrt(np.mean(audio[cut - 480 : cut] ** 2))  # the frame chosen as the cut
        assert cut_rms < 0.5 * np.sqrt(np.mean(before.audio**2))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(UserError, match="aggressiveness"):
        SegmenterConfig(aggressiveness=4)
    with pytest.raises(UserError, match="frame_ms"):
        SegmenterConfig(frame_ms=25)
    with pytest.raises(UserError, match="split_search_ms"):
        SegmenterConfig(max_utterance_s=1.0, split_search_ms=2000)


def test_in_progress_utterance_keeps_its_id_when_decided() -> None:
    """While a turn is spoken, in_progress() shows it so far; the decided utterance has its id."""
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0)
    seen: dict[int, list[Utterance]] = {}  # id -> in-progress views, in order
    found: list[Utterance] = []
    for block in open_file(EXAMPLES / "dialogue.wav").blocks():
        for frame in framer.feed(block):
            found += segmenter.feed(frame)
        view = segmenter.in_progress()
        if view is not None:
            seen.setdefault(view.id, []).append(view)
    found += segmenter.flush()
    assert [u.id for u in found] == list(range(len(found))) and len(found) == 8
    for utterance in found:
        views = seen[utterance.id]
        assert all(v.start == utterance.start and v.channel == utterance.channel for v in views)
        assert all(v.end <= utterance.end + config.frame_ms / 1000 for v in views)
        assert [v.end for v in views] == sorted(v.end for v in views)
        assert np.array_equal(views[-1].audio, utterance.audio[: len(views[-1].audio)])


def test_in_progress_is_none_when_idle_in_a_pause_or_too_short(speak: Callable[..., np.ndarray]) -> None:
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0)
    audio = np.concatenate([silence(0.5), speak("Hello there, how are you today?"), silence(0.3)])
    views = []
    for block in blocks_of(audio, block_n=480):  # one 30 ms frame per block
        for frame in framer.feed(block):
            segmenter.feed(frame)
        views.append(segmenter.in_progress())
    assert all(v is None for v in views[: round(0.5 / 0.03)])  # silence: idle
    first = next(i for i, v in enumerate(views) if v is not None)
    # not before min_speech_ms of voiced frames
    assert views[first].end - views[first].start >= config.min_speech_ms / 1000
    assert views[-1] is None  # 0.3 s of silence at the end: a pause, not speech in progress


def test_ending_offers_the_utterance_half_way_through_the_hangover() -> None:
    """ending(): the utterance as the hangover will decide it, 210 ms before that decision."""
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0)
    offered: dict[int, tuple[Utterance, float]] = {}  # id -> (view, when it came) of the latest pause
    found: list[Utterance] = []
    for block in open_file(EXAMPLES / "dialogue.wav").blocks():
        for frame in framer.feed(block):
            found += segmenter.feed(frame)
            for view in segmenter.ending():
                if view.id not in offered or offered[view.id][0].end != view.end:
                    offered[view.id] = (view, frame.end)  # the first frame of a new pause
    found += segmenter.flush()
    assert len(found) == 8
    for utterance in found[:-1]:  # the last one is closed by the end of the file, not a pause
        view, at = offered[utterance.id]
        assert (view.start, view.end) == (utterance.start, utterance.end)
        assert np.array_equal(view.audio, utterance.audio)
        assert utterance.decided_at - at == pytest.approx((config.hangover_ms - 210) / 1000, abs=1e-6)


def test_silero_engine_finds_the_example_turns(dialogue_truth: list[tuple[str, float, float]]) -> None:
    pytest.importorskip("silero_vad", reason="vad.engine = silero needs pip install silero-vad")
    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    found = segment(audio, SegmenterConfig(engine="silero", hangover_ms=480))
    assert_boundaries(found, [(start, end) for _, start, end in dialogue_truth])


def test_an_unknown_vad_engine_is_a_user_error() -> None:
    with pytest.raises(UserError, match="vad.engine must be one of webrtcvad, silero"):
        SegmenterConfig(engine="rnnoise")


# --- speaker changes inside an utterance ---------------------------------------------------------

# Two espeak-ng voices 0.6+ apart (CAM++ cosine), answering each other after pauses shorter than the
# hangover; the mix without a split is one or two utterances.
MIXED_TURNS = [
    ("en-us", "How was the interview this morning?"),
    ("en-us+f3", "They turned me down, after three rounds of questions."),
    ("en-us", "Oh no, I am so sorry to hear that."),
    ("en-us+f3", "It is fine, I will find something better soon."),
]
SHORT_PAUSES_S = (0.12, 0.25, 0.18)  # between the turns above, all shorter than the 420 ms hangover


def mixed(speak: Callable[..., np.ndarray], turns: list[tuple[str, str]],
          pauses: tuple[float, ...]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The turns spoken and joined by ``pauses``, 0.5 s of silence around: audio float32 [n] and
    each turn's (start, end) in seconds."""
    pieces, bounds, t = [silence(0.5)], [], 0.5
    for k, (voice, text) in enumerate(turns):
        speech = speak(text, voice)
        bounds.append((t, t + len(speech) / SAMPLE_RATE))
        gap = silence(pauses[k] if k < len(pauses) else 0.5)
        pieces += [speech, gap]
        t = bounds[-1][1] + len(gap) / SAMPLE_RATE
    return np.concatenate(pieces), bounds


def segment_with_change(audio: np.ndarray, change, config: SegmenterConfig = SegmenterConfig()) -> list[Utterance]:
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0, speaker_change=change)
    found = [u for block in blocks_of(audio) for frame in framer.feed(block) for u in segmenter.feed(frame)]
    return found + segmenter.flush()


def test_internal_pauses_are_the_non_speech_runs_between_voiced_frames() -> None:
    voiced = [False, True, True, False, True, False, False, True, False, False]
    assert internal_pauses(voiced) == [(3, 4), (5, 7)]
    assert internal_pauses([False, False]) == [] and internal_pauses([True, False, False]) == []


@needs_campplus
def test_turns_merged_by_short_pauses_are_cut_where_the_voice_changes(speak: Callable[..., np.ndarray]) -> None:
    audio, bounds = mixed(speak, MIXED_TURNS, SHORT_PAUSES_S)
    merged = segment(audio)
    assert len(merged) < len(MIXED_TURNS)  # the hangover glues the turns: the defect being fixed
    found = segment_with_change(audio, SpeakerChangeDetector())
    assert_boundaries(found, bounds)
    assert [u.id for u in found] == list(range(len(found)))
    merged_starts = {round(u.start, 2) for u in merged}  # a part cut at a voice change is marked
    assert [u.voice_change for u in found] == [round(u.start, 2) not in merged_starts for u in found]


@needs_campplus
def test_one_voice_is_not_cut_at_its_own_pauses(speak: Callable[..., np.ndarray]) -> None:
    """The same voice, the same sentences and pauses: no cut (the speaker-change test must not
    chop one speaker's sentences)."""
    one_voice = [("en-us", text) for _, text in MIXED_TURNS] + [("en-us+f3", text) for _, text in MIXED_TURNS]
    audio, _ = mixed(speak, one_voice[:4], SHORT_PAUSES_S)
    assert len(segment_with_change(audio, SpeakerChangeDetector())) == len(segment(audio))
    audio, _ = mixed(speak, one_voice[4:], SHORT_PAUSES_S)
    assert len(segment_with_change(audio, SpeakerChangeDetector())) == len(segment(audio))


@needs_campplus
def test_a_voice_print_reuses_a_stretch_the_change_test_embedded(speak: Callable[..., np.ndarray]) -> None:
    """The stretches the speaker-change test heard one voice in are noted on the utterance, and its
    voice print takes one of them: the network pass is reused, not run again."""
    from models.frontends.speaker import SpeakerEmbedder
    from streamer.speakers import print_audio

    embedder = SpeakerEmbedder()
    audio, _ = mixed(speak, [("en-us", text) for _, text in MIXED_TURNS], SHORT_PAUSES_S)
    found = segment_with_change(audio, SpeakerChangeDetector(embed_spans=embedder.embed_spans))
    longest = max(found, key=lambda u: u.duration)
    assert longest.duration > 5 and len(longest.one_voice) >= 2
    assert all(longest.start <= a < b <= longest.end for a, b in longest.one_voice)
    passes = len(embedder._recent)
    embedder.embed(print_audio(longest))
    assert len(embedder._recent) == passes  # served from a kept pass


@needs_campplus
def test_ending_offers_the_last_part_as_it_is_decided(speak: Callable[..., np.ndarray]) -> None:
    """With a speaker change, ending() shows the last part (same id and audio as decided), and the
    earlier parts come with it, with smaller ids."""
    audio, _ = mixed(speak, MIXED_TURNS[:2], SHORT_PAUSES_S[:1])
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0, speaker_change=SpeakerChangeDetector())
    offered, found = None, []
    for block in blocks_of(audio, block_n=480):
        for frame in framer.feed(block):
            found += segmenter.feed(frame)
            offered = (segmenter.ending() or [offered])[-1]
    assert len(found) == 2 and offered is not None
    assert offered.id == found[1].id > found[0].id
    assert np.array_equal(offered.audio, found[1].audio)


@needs_campplus
def test_cut_candidate_offers_each_part_before_its_speaker_change_is_decided(speak: Callable[..., np.ndarray]) -> None:
    """cut_candidate(): while a pause waits for its test, the part before it (same id and audio
    as the part the test then cuts), offered before that decision; None without a detector."""
    audio, _ = mixed(speak, MIXED_TURNS, SHORT_PAUSES_S)
    config = SegmenterConfig()
    framer, segmenter = Framer(0, config.frame_ms), Segmenter(config, 0, speaker_change=SpeakerChangeDetector())
    offered: dict[tuple[int, int], float] = {}  # (id, samples) -> stream time first offered
    cut = []  # (part, stream time decided) for the parts decided while speech went on
    for block in blocks_of(audio, block_n=480):
        for frame in framer.feed(block):
            cut += [(u, frame.end) for u in segmenter.feed(frame) if segmenter.in_progress() is not None]
            candidate = segmenter.cut_candidate()
            if candidate is not None:
                offered.setdefault((candidate.id, len(candidate.audio)), frame.end)
    assert cut, "no part was cut while the next voice spoke"
    for part, decided in cut:
        assert offered.get((part.id, len(part.audio)), decided) < decided - 0.5  # offered well before
    framer, plain = Framer(0, config.frame_ms), Segmenter(config, 0)
    for block in blocks_of(audio):
        for frame in framer.feed(block):
            plain.feed(frame)
            assert plain.cut_candidate() is None
