"""The streaming pipeline as one stage: AudioBlocks in, EmotionEvents out, no I/O.

    block -> Framer/Segmenter per channel -> Utterance -> Transcriber (one Whisper encoder pass:
    text + acoustic vector + encoder states) -> speaker attribution -> text embedding ->
    DialogueContext -> EmotionPredictor -> EmotionEvent

Working ahead: half-way through the VAD hangover (the pause that ends an utterance), the
utterance is transcribed and embedded, and its voice print computed, as it will be cut if the
pause goes on; when the hangover then decides it, its event reuses that work, so the decision
waits only for the speaker clustering and the fusion model (Whisper and CAM++, the bulk of the
cost, already ran during the pause).
When speech resumes instead, that work was wasted (once per pause of 210-420 ms), which is why
a run as fast as possible, where nobody waits for each result, turns it off (``work_ahead``).
Where two voices answer each other after a pause shorter than the hangover, the segmenter
decides the first turn as soon as 1 s of the answer is heard to be another voice
(``streamer.speaker_change``), without waiting for the answer to end; that part is prepared
during that second instead, as soon as the pause is over (``Segmenter.cut_candidate``), and
the work is wasted where the voice has not changed (once per tested pause; ``prepare_cuts``).

The caller owns the clock: ``feed`` as blocks arrive (from a microphone, a paced file, a file as
fast as possible, or a test), ``flush`` at the end of the stream. ``partials`` polls interim
results for utterances still in progress; the caller skips it when it is behind.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from models.predictor import ContextItem, EmotionPredictor

from .context import ContextConfig, DialogueContext
from .framing import Framer
from .records import AudioBlock, EmotionEvent, PartialEvent, Speaker, Transcript, Utterance
from .segmenter import Segmenter, SegmenterConfig
from .speaker_change import SpeakerChangeConfig, SpeakerChangeDetector
from .speakers import SpeakerAttributor, SpeakerRevisions
from .transcriber import Transcriber

log = logging.getLogger(__name__)

PROMPT_TURNS = 8  # the last events whose texts the transcriber is given as its prompt


def cut_repetition(text: str) -> str:
    """The text up to the end of the first phrase (2 words or more) that is immediately
    repeated: Whisper on audio cut off mid-sentence often loops ("Okay, let's... Okay, let's...").
    """
    words = text.split()
    for start in range(len(words)):
        for n in range(2, (len(words) - start) // 2 + 1):
            if words[start : start + n] == words[start + n : start + 2 * n]:
                return " ".join(words[: start + n])
    return text


@dataclass(frozen=True)
class Heard:
    """Everything about an utterance that does not depend on the conversation so far: the
    transcript, the acoustic vector [audio_dim] and the text embedding [text_dim] for the model
    (None when not used or no words), and the voice print for speaker attribution (None when the
    attributor needs none, or for a partial)."""

    transcript: Transcript
    audio: np.ndarray | None
    text: np.ndarray | None
    voice: np.ndarray | None

    def item(self, speaker: Speaker) -> ContextItem:
        return ContextItem(audio=self.audio, text=self.text, speaker=speaker.value)


class Pipeline:
    """Segment, transcribe, attribute, contextualise and score a stream of audio blocks.

    channels: 1 or 2 (each channel has its own VAD). text_encoder: a
    :class:`models.frontends.text.TextEncoder`, or None to give the model no text; one tuned on
    utterances read with their past turns (``context_turns`` > 0) reads each utterance with the
    session's last turns, marked same or other speaker, as training read each corpus turn
    (:func:`models.features.in_context`), once its speaker is decided. use_audio: give the model the acoustic vector.
    feature_encoder: a separate Whisper encoder for the acoustic vector when the checkpoint's
    audio frontend differs from the ASR model (None: reuse the ASR encoder pass).
    partial_every_s: stream seconds between interim results of an utterance in progress (0: none).
    work_ahead: prepare an utterance during its hangover (module docstring); an attribute the
    caller may switch. prepare_cuts: with work_ahead, also prepare the part a pending
    speaker-change test would cut (about a quarter more CPU in real time); an attribute too.
    known_speakers: the speaker of each channel when the channel alone decides it (stereo by
    channel, a single speaker), so interim results can name it; None: the speaker is decided
    by voice when the utterance ends, interim results carry none, and an utterance is cut where
    the voice changes at an inner pause (``segmenter.voice_change_distance``).
    wall_clock: seconds, monotonic; used only for latency.

    Speaker revisions: where the attributor revisits earlier utterances (``names()``, the online
    clustering of mono voices), each event lists the earlier utterances whose speaker the new
    evidence changed (``EmotionEvent.revisions``, :class:`SpeakerRevisions`). The dialogue
    context keeps the speaker tags the model was given: relabelling it measured slightly worse
    emotions end to end (docs/benchmarks.md, "Speaker revisions"); emitted emotions are not re-scored.
    """

    def __init__(
        self,
        channels: int,
        segmenter: SegmenterConfig,
        transcriber: Transcriber,
        attributor: SpeakerAttributor,
        predictor: EmotionPredictor,
        text_encoder=None,
        use_audio: bool = True,
        context: ContextConfig = ContextConfig(),
        feature_encoder=None,
        partial_every_s: float = 1.0,
        work_ahead: bool = True,
        prepare_cuts: bool = True,
        known_speakers: tuple[Speaker, ...] | None = None,
        wall_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        ids = itertools.count()
        self.framers = [Framer(c, segmenter.frame_ms) for c in range(channels)]
        speaker_change = None  # by voice, an utterance is cut where the voice changes (streamer.speaker_change)
        if known_speakers is None and segmenter.voice_change_distance > 0:
            speaker_change = SpeakerChangeDetector(SpeakerChangeConfig(distance=segmenter.voice_change_distance))
        self.segmenters = [Segmenter(segmenter, c, ids, speaker_change) for c in range(channels)]
        self.transcriber = transcriber
        self.attributor = attributor
        self.predictor = predictor
        self.session_audio = predictor.session_audio()  # per-speaker running statistics, where the model wants them
        self.text_encoder = text_encoder
        self.use_audio = use_audio
        self.feature_encoder = feature_encoder
        self.context = DialogueContext(context)
        self.partial_every_s = partial_every_s
        self.work_ahead = work_ahead
        self.prepare_cuts = prepare_cuts
        self.known_speakers = known_speakers
        self._partial_until: dict[int, float] = {}  # utterance id -> end of its latest partial, s
        self._ahead: dict[int, dict[tuple[int, int], Heard]] = {}  # channel -> {(id, samples): prepared}
        # The last events' speakers and texts: the transcriber's prompt, and the past turns a
        # text encoder tuned in context reads.
        self._said: deque[tuple[Speaker, str]] = deque(maxlen=max(PROMPT_TURNS, self.text_turns))
        self.revisions = SpeakerRevisions()
        self.wall_clock = wall_clock
        self.processed_until = 0.0  # stream seconds fed so far
        self.model_identity = predictor.identity()
        self.asr_identity = transcriber.identity()

    def feed(self, block: AudioBlock) -> list[EmotionEvent]:
        """Process one block; return the events of the utterances it completed."""
        utterances = [
            u
            for framer, segmenter in zip(self.framers, self.segmenters)
            for frame in framer.feed(block)
            for u in segmenter.feed(frame)
        ]
        self.processed_until = block.start + block.duration
        events = self._score(utterances)
        if self.work_ahead:
            self._prepare_ending()
        return events

    def flush(self) -> list[EmotionEvent]:
        """End of stream: close open utterances and score them."""
        return self._score([u for s in self.segmenters for u in s.flush()])

    def partials(self) -> list[PartialEvent]:
        """Interim results: one per utterance still in progress whose audio has grown by
        ``partial_every_s`` since its start or its previous partial (stream seconds).

        Costs one transcription of the audio so far, a text embedding and a model pass each; the
        speaker attribution and the dialogue context are left untouched (the final event does that).
        """
        if self.partial_every_s <= 0:
            return []
        events = []
        for segmenter in self.segmenters:
            utterance = segmenter.in_progress()
            if utterance is None:
                continue
            since = self._partial_until.get(utterance.id, utterance.start)
            if utterance.end - since < self.partial_every_s:
                continue
            self._partial_until[utterance.id] = utterance.end
            event = self._partial(utterance)
            if event is not None:
                events.append(event)
        return events

    def _score(self, utterances: list[Utterance]) -> list[EmotionEvent]:
        decided = self.wall_clock()
        events = []
        for utterance in sorted(utterances, key=lambda u: (u.decided_at, u.channel)):
            self._partial_until.pop(utterance.id, None)
            event = self._event(utterance, decided)
            if event is not None:
                events.append(event)
        return events

    def _prepare_ending(self) -> None:
        """Prepare each utterance that is half-way through its hangover, every part of it where
        it will be cut at a voice change (once per pause); else the part a pending speaker-change
        test would cut (once per tested pause)."""
        for segmenter in self.segmenters:
            ending = segmenter.ending()
            if not ending and self.prepare_cuts:
                ending = [u for u in [segmenter.cut_candidate()] if u is not None]
            if not ending:
                continue
            cached = self._ahead.get(segmenter.channel, {})
            keys = [(u.id, len(u.audio)) for u in ending]
            self._ahead[segmenter.channel] = {
                key: cached[key] if key in cached else self._hear(u) for key, u in zip(keys, ending)
            }

    def _event(self, utterance: Utterance, decided: float) -> EmotionEvent | None:
        heard = self._ahead.get(utterance.channel, {}).pop((utterance.id, len(utterance.audio)), None)
        if heard is None:  # not prepared during the hangover (from the same audio)
            heard = self._hear(utterance)
        transcript = heard.transcript
        if not transcript.text and transcript.no_speech_prob > self.transcriber.config.no_speech_threshold:
            log.debug("utterance %d at %.2f s: no speech (p=%.2f), skipped",
                      utterance.id, utterance.start, transcript.no_speech_prob)
            return None
        speaker = self.attributor.assign(utterance, transcript.encoder_states, heard.voice)
        if self.text_turns and transcript.text:
            heard = replace(heard, text=self._text_vector(transcript.text, speaker))
        self._said.append((speaker, transcript.text))
        revisions = self.revisions.note(utterance.id, speaker, self.attributor.names())
        window = self.context.push(self.session_audio.item(heard.item(speaker)), utterance.start, utterance.end)
        emotions = self.predictor.predict(window)
        return EmotionEvent(
            id=utterance.id, speaker=speaker, channel=utterance.channel,
            start=utterance.start, end=utterance.end, text=transcript.text,
            emotions=emotions, latency_ms=1000.0 * (self.wall_clock() - decided),
            model=self.model_identity, asr=self.asr_identity,
            context_size=min(len(window), self.predictor.max_context), revisions=revisions,
        )

    def _partial(self, utterance: Utterance) -> PartialEvent | None:
        """Score the audio so far; None while Whisper hears no words in it yet."""
        started = self.wall_clock()
        transcript = self.transcriber.transcribe(utterance.audio, self._prompt())
        if not transcript.text:
            return None
        # The voice's vector only where the transcription pass gives it: a second encoder pass
        # (feature_encoder) over the growing audio every partial would cost more than the
        # transcription itself, for a provisional answer the final event replaces.
        heard = self._hear(utterance, replace(transcript, text=cut_repetition(transcript.text)), voice=False,
                           acoustic=self.feature_encoder is None)
        speaker = self.known_speakers[utterance.channel] if self.known_speakers is not None else None
        # The model wants a speaker tag: unknown, guess a turn change (the usual case in a dialogue).
        last = self.context.last
        guess = speaker or (Speaker(last.speaker).other if last is not None else Speaker.A)
        if self.text_turns:
            heard = replace(heard, text=self._text_vector(heard.transcript.text, guess))
        window = self.context.peek(self.session_audio.item(heard.item(guess), update=False), utterance.start)
        return PartialEvent(
            id=utterance.id, speaker=speaker, channel=utterance.channel,
            start=utterance.start, end=utterance.end, text=heard.transcript.text,
            emotions=self.predictor.predict(window), latency_ms=1000.0 * (self.wall_clock() - started),
            model=self.model_identity, asr=self.asr_identity,
            context_size=min(len(window), self.predictor.max_context),
        )

    def _hear(self, utterance: Utterance, transcript: Transcript | None = None, voice: bool = True,
              acoustic: bool = True) -> Heard:
        """An utterance's :class:`Heard` (transcribed here unless ``transcript`` is given; no voice
        print unless ``voice``; no acoustic vector unless ``acoustic``: the model then takes the
        audio as missing). A text encoder that reads the past turns embeds later, once the
        speaker is known (``text`` None here)."""
        if transcript is None:
            transcript = self.transcriber.transcribe(utterance.audio, self._prompt())
        return Heard(
            transcript=transcript,
            audio=self._audio_vector(utterance, transcript) if self.use_audio and acoustic else None,
            text=self._text_vector(transcript.text) if not self.text_turns else None,
            voice=self.attributor.print_of(utterance, transcript.encoder_states) if voice else None,
        )

    @property
    def text_turns(self) -> int:
        """Past turns the text encoder reads each utterance with (0: utterances alone, or no text)."""
        return self.text_encoder.context_turns if self.text_encoder is not None else 0

    def _prompt(self) -> str:
        """The transcriber's prompt: the last events' texts."""
        return " ".join(text for _, text in list(self._said)[-PROMPT_TURNS:])

    def _text_vector(self, text: str, speaker: Speaker | None = None) -> np.ndarray | None:
        """The text embedding [text_dim] (None without an encoder or words); an encoder tuned in
        context reads ``text`` as said by ``speaker`` after the session's last non-empty turns."""
        if self.text_encoder is None or not text:
            return None
        if not self.text_turns:
            return self.text_encoder.embed([text])[0]
        from models.frontends.text import InContext

        read = InContext.after(text, speaker, self._said, self.text_turns)
        return self.text_encoder.embed_in_context([read], self.text_encoder.context_tokens)[0]

    def _audio_vector(self, utterance: Utterance, transcript: Transcript) -> np.ndarray | None:
        if self.feature_encoder is None:
            return transcript.audio_features
        from models.frontends.whisper import pool_mean_std

        return pool_mean_std(self.feature_encoder.encode(utterance.audio).states)
