"""Transcription from the shared Whisper encoder pass, with a guard against invented text.

The utterance is encoded once (:class:`models.frontends.whisper.WhisperEncoder`); the decoder
reads that encoder output, and the same states are pooled into the acoustic feature vector and
kept for speaker attribution.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from models.frontends.whisper import WhisperEncoder, pool_mean_std

from .records import SAMPLE_RATE, Transcript


@dataclass(frozen=True)
class TranscriberConfig:
    """Decoding options (Whisper's own defaults for the hallucination guard).

    repetition_penalty: logits of tokens already generated are divided by this (CTranslate2's
    penalty); 1.1 stops the short-window loops ("What? What? What? ...") that greedy decoding of
    a 1-2 s utterance falls into (MELD dev true segments: WER .31 -> .23; docs/benchmarks.md,
    "Transcription without loops"). no_repeat_ngram_size: forbid any repeated token n-gram
    (0 = off; 3 was worse than the penalty alone). no_speech_threshold: drop the text when
    P(no speech) exceeds this *and* the mean token log-probability is below
    ``logprob_threshold``; compression_ratio_threshold: drop text that zlib compresses better
    than this (repetition loops). fallback_beam_size / fallback_logprob: beam search only where
    greedy looks unsure (mean log-probability below fallback_logprob, or a loop; off by default).
    prompt_tokens: at most this many tokens of the session's previous transcripts (the end of
    them) go before the start-of-transcript token, as Whisper's ``<|startofprev|>`` prompt does
    across its 30 s windows (0 = no prompt): the dialogue is the context a 1-2 s turn lacks,
    but with it Whisper also skips words that repeat the prompt ("Failed again? This is
    ridiculous!" after "It failed again" lost its first words), so it is off by default; with
    greedy decoding it helps (WER .215 -> .201), with beam search hardly (.180 -> .177).
    style_prompt: a fixed text that goes in the prompt before the previous transcripts ("" =
    none); Whisper imitates its prompt's punctuation, so a text written with exclamations makes
    it write "!" more often, but mostly where the words exclaim, hardly where only the voice does
    (dev "!" recall 10/58 -> 34/58 at precision .30 -> .24), and end to end UA did not rise: off.
    lead_in_s: seconds of silence put before the utterance for decoding (0 = decode the shared
    encoder pass; more costs a second pass, since the pooled features must stay the utterance's
    own, as the checkpoint was trained on them); Whisper drops the first word of audio that starts
    right at the speech ("Fine. Do it your way" -> "I do it your way"), but the segmenter's preroll
    already gives it most of that silence, and end to end UA fell with 0.3 s: off.
    Default beam 3 without a prompt (docs/benchmarks.md, "Transcription without loops" and
    "Exclamations from speech (round 5)"): end to end it matches beam 5 (UA and WER on two seeds
    of three dev sets) at about 10 % less Whisper CPU.
    """

    beam_size: int = 3
    max_tokens: int = 224  # hard cap; also at most 16 + 12 per second of audio (bounds a loop)
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 0
    fallback_beam_size: int = 0  # > beam_size: decode again with this beam when the first pass looks unsure
    fallback_logprob: float = -0.8  # ... i.e. its mean token log-probability is below this, or it loops
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    prompt_tokens: int = 0
    style_prompt: str = ""
    lead_in_s: float = 0.0


def compression_ratio(text: str) -> float:
    """len(text) / len(zlib(text)): above ~2.4 Whisper's output is usually a repetition loop."""
    data = text.encode()
    return len(data) / max(1, len(zlib.compress(data)))


class Transcriber:
    """utterance audio -> :class:`Transcript` (text, confidences, pooled encoder features)."""

    def __init__(self, encoder: WhisperEncoder, config: TranscriberConfig = TranscriberConfig()) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.encoder = encoder
        self.config = config
        model = encoder.whisper.model
        self.tokenizer = Tokenizer(
            encoder.whisper.hf_tokenizer, model.is_multilingual, task="transcribe",
            language="en" if model.is_multilingual else None,
        )
        self.prompt = list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]
        self.style = self.tokenizer.encode(" " + config.style_prompt.strip()) if config.style_prompt.strip() else []

    def identity(self) -> dict[str, str]:
        """The ASR model, device and compute type (into every event)."""
        return {"model": self.encoder.name, "device": self.encoder.device, "compute_type": self.encoder.compute_type}

    def _previous(self, previous: str) -> list[int]:
        """``<|startofprev|>``, the style prompt's tokens and the last ``prompt_tokens`` tokens of
        ``previous`` ([] when there is neither a style prompt nor, with ``prompt_tokens`` > 0, a
        previous text)."""
        said = self.tokenizer.encode(" " + previous.strip()) if self.config.prompt_tokens > 0 and previous.strip() else []
        tokens = self.style + said[-self.config.prompt_tokens:]  # said is [] when prompt_tokens is 0
        return [self.tokenizer.sot_prev] + tokens if tokens else []

    def _decode(self, output: object, audio_s: float, beam_size: int, previous: list[int]):
        """One decoding of the encoder output (a CTranslate2 WhisperGenerationResult); ``previous``:
        the prompt tokens before the start of transcript (CTranslate2 counts them in max_length)."""
        return self.encoder.whisper.model.generate(
            output, [previous + self.prompt], beam_size=beam_size,
            max_length=min(self.encoder.whisper.max_length, len(previous) + min(self.config.max_tokens, 16 + int(12 * audio_s))),
            return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=[-1],
            repetition_penalty=self.config.repetition_penalty, no_repeat_ngram_size=self.config.no_repeat_ngram_size,
        )[0]

    def transcribe(self, audio: np.ndarray, previous: str = "") -> Transcript:
        """audio: float32 [n] at 16 kHz (one utterance, ≤ 30 s); previous: what the session said
        before it, oldest first (used when ``prompt_tokens`` > 0)."""
        encoded = self.encoder.encode(audio)
        lead = np.zeros(round(self.config.lead_in_s * SAMPLE_RATE), np.float32)
        heard = self.encoder.encode(np.concatenate([lead, audio])).output if len(lead) else encoded.output
        audio_s = (len(lead) + len(audio)) / SAMPLE_RATE
        prompt = self._previous(previous)
        result = self._decode(heard, audio_s, self.config.beam_size, prompt)
        text = self.tokenizer.decode(result.sequences_ids[0]).strip()
        if self.config.fallback_beam_size > self.config.beam_size and (
            (result.scores[0] if result.scores else 0.0) < self.config.fallback_logprob
            or compression_ratio(text) > self.config.compression_ratio_threshold
        ):
            result = self._decode(heard, audio_s, self.config.fallback_beam_size, prompt)
            text = self.tokenizer.decode(result.sequences_ids[0]).strip()
        avg_logprob = float(result.scores[0]) if result.scores else 0.0
        silent = result.no_speech_prob > self.config.no_speech_threshold and avg_logprob < self.config.logprob_threshold
        looping = compression_ratio(text) > self.config.compression_ratio_threshold
        return Transcript(
            text="" if silent or looping else text,
            no_speech_prob=float(result.no_speech_prob),
            avg_logprob=avg_logprob,
            audio_features=pool_mean_std(encoded.states),
            encoder_states=encoded.states,
        )
