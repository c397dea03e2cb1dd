"""Speaker attribution on real (espeak-ng synthesized) speech; no shared data needed."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from streamer.errors import UserError
from streamer.records import SAMPLE_RATE, Speaker, Utterance
from streamer.speakers import (
    PITCH_UNIT_ST,
    SpeakerConfig,
    SpeakerMode,
    VoiceFeature,
    make_attributor,
    voice_print,
)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

# (voice, text): a male and a female voice, not strictly alternating
TURNS = [
    ("en-us", "Did you see the game last night?"),
    ("en-us+f3", "No, I was working late again."),
    ("en-us", "That's a shame."),
    ("en-us", "It was really close until the very last minute."),
    ("en-us+f3", "Who won?"),
    ("en-us", "The home team, by a single point."),
    ("en-us+f3", "I can't believe it."),
    ("en-us+f3", "Are you coming to dinner on Friday?"),
    ("en-us", "Maybe, if I finish early."),
    ("en-us+f3", "Great, see you then."),
]


def synthesize(voice: str, text: str, folder: Path) -> np.ndarray:
    """espeak-ng speech as float32 [n_samples] at 16 kHz."""
    path = folder / "turn.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE).astype(np.float32)


def utterance(i: int, audio: np.ndarray, channel: int = 0) -> Utterance:
    start = 3.0 * i
    end = start + len(audio) / SAMPLE_RATE
    return Utterance(id=i, channel=channel, start=start, end=end, audio=audio, decided_at=end + 0.3)


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Utterance]]:
    folder = tmp_path_factory.mktemp("espeak")
    return [(voice, utterance(i, synthesize(voice, text, folder))) for i, (voice, text) in enumerate(TURNS)]


def attribute(config: SpeakerConfig, utterances: list[Utterance]) -> list[Speaker]:
    attributor = make_attributor(config)
    return [attributor.assign(u, None) for u in utterances]


def test_two_voices_are_told_apart(dialogue):
    speakers = attribute(SpeakerConfig(), [u for _, u in dialogue])
    truth = [voice == TURNS[0][0] for voice, _ in dialogue]
    hits = np.mean([(s is Speaker.A) == t for s, t in zip(speakers, truth)])
    assert speakers[0] is Speaker.A
    assert max(hits, 1 - hits) >= 0.8


def test_first_utterance_is_a_even_for_the_second_voice(dialogue):
    speakers = attribute(SpeakerConfig(), [u for _, u in dialogue[1:]])
    assert speakers[0] is Speaker.A
    assert Speaker.B in speakers


def test_deterministic(dialogue):
    utterances = [u for _, u in dialogue]
    assert attribute(SpeakerConfig(), utterances) == attribute(SpeakerConfig(), utterances)


def test_one_voice_with_a_high_distance_stays_a(dialogue):
    same_voice = [u for voice, u in dialogue if voice == "en-us"]
    assert attribute(SpeakerConfig(new_speaker_distance=3.0), same_voice) == [Speaker.A] * len(same_voice)


def test_single_mode_is_all_a(dialogue):
    speakers = attribute(SpeakerConfig(mode=SpeakerMode.SINGLE), [u for _, u in dialogue])
    assert speakers == [Speaker.A] * len(dialogue)


def test_channel_mode_follows_the_channel_map(dialogue):
    audio = dialogue[0][1].audio
    utterances = [utterance(i, audio, channel=c) for i, c in enumerate([1, 0, 1])]
    assert attribute(SpeakerConfig(mode=SpeakerMode.CHANNEL), utterances) == [Speaker.B, Speaker.A, Speaker.B]
    swapped = SpeakerConfig(mode=SpeakerMode.CHANNEL, channel_map=(Speaker.B, Speaker.A))
    assert attribute(swapped, utterances) == [Speaker.A, Speaker.B, Speaker.A]
    with pytest.raises(UserError, match="channel 2"):
        attribute(SpeakerConfig(mode=SpeakerMode.CHANNEL), [utterance(0, audio, channel=2)])


def test_unvoiced_noise_has_unknown_pitch_and_is_still_attributed(dialogue):
    noise = (0.05 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)).astype(np.float32)
    vp = voice_print(VoiceFeature.PITCH_MFCC, noise)
    assert np.isnan(vp[0]) and np.isfinite(vp[1:]).all()
    speakers = attribute(SpeakerConfig(), [dialogue[0][1], utterance(1, noise), dialogue[1][1]])
    assert speakers[0] is Speaker.A and len(speakers) == 3


@pytest.mark.parametrize("f0", [65.0, 110.0, 220.0, 350.0])
def test_pitch_of_a_harmonic_tone_within_a_quarter_tone(f0: float):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)).astype(np.float32) * 0.2
    semitones_above_55hz = voice_print(VoiceFeature.PITCH, tone)[0] * PITCH_UNIT_ST
    assert abs(semitones_above_55hz - 12 * np.log2(f0 / 55.0)) < 0.5


def test_encoder_feature_needs_states(dialogue):
    with pytest.raises(ValueError, match="encoder states"):
        attribute(SpeakerConfig(feature=VoiceFeature.ENCODER), [dialogue[0][1]])
    states = np.ones((50, 384), np.float32)
    assert make_attributor(SpeakerConfig(feature=VoiceFeature.ENCODER)).assign(dialogue[0][1], states) is Speaker.A


def test_bad_distance_is_a_user_error():
    with pytest.raises(UserError):
        SpeakerConfig(new_speaker_distance=0.0)
