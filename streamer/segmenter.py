"""Voice activity segmentation: frames of one channel in, utterances out (webrtcvad).

State machine per channel: IDLE keeps the last `preroll_ms` of frames; a voiced frame opens an
utterance (with that preroll in front); `hangover_ms` of consecutive non-speech closes it at the
end of its last voiced frame (webrtcvad itself lags ~0.1 s behind the end of speech); an
utterance with less than `min_speech_ms` of voiced frames is dropped as a click; one reaching
`max_utterance_s` is split at its quietest frame within the last `split_search_ms`, and the rest
goes on as the next utterance.

Speaker changes inside an utterance: two parties often answer each other after a pause shorter
than the hangover, and then both turns land in one utterance. When a ``SpeakerChange`` detector
is given (mono voice attribution), the segmenter hands it each utterance it decides together with
its internal pauses (runs of non-speech frames between voiced ones), and cuts the utterance at the
pauses where the detector hears another voice on either side; each part becomes an utterance of
its own (the left part ends at its last voiced frame, the right one starts up to ``preroll_ms``
before its first). ``ending`` offers the last part, cut the same way (the detector is asked once
per utterance extent), so work on it can still start during the hangover.

Defaults were chosen on espeak-ng dialogue (examples/) and 40 EmoDB sentences joined by 0.6-1.2 s
gaps, clean and with white noise at -50/-40/-35 dBFS: mode 3 keeps turns apart when a noise
floor appears after digital silence (mode 2 glued them); 420 ms hangover splits 0.6 s turn gaps
but not espeak-ng's sentence pauses (<= 0.35 s); boundaries land within ~0.12 s of the truth.

Utterance ids come from an iterator the caller may share between the segmenters of several
channels (`itertools.count()`), so ids are unique across channels; by default each segmenter
counts from 0 on its own. An utterance takes its id when it is first looked at while still open
(`in_progress`, for interim results) or else when it is decided, so the final utterance keeps
the id its interim results carried, and on one channel ids increase in stream order.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import webrtcvad

from streamer.errors import UserError
from streamer.framing import VAD_FRAME_MS
from streamer.records import SAMPLE_RATE, Frame, Utterance


@dataclass(frozen=True)
class SegmenterConfig:
    """How speech is cut into utterances. Durations in milliseconds unless marked _s."""

    engine: str = "webrtcvad"  # the frame classifier: webrtcvad | silero (SileroDetector)
    aggressiveness: int = 3  # webrtcvad mode 0 (lenient) .. 3 (strict about what is speech)
    frame_ms: int = 30  # VAD frame length: 10, 20 or 30
    preroll_ms: int = 90  # audio kept before the first voiced frame (soft onsets)
    hangover_ms: int = 420  # this much non-speech ends an utterance
    min_speech_ms: int = 240  # fewer voiced milliseconds than this: a click, dropped
    max_utterance_s: float = 15.0  # longer speech is split near this length
    split_search_ms: int = 2000  # the split point is the quietest frame in this last stretch
    # Cut an utterance at an inner pause where the voices either side are farther apart than this
    # (CAM++ cosine distance, streamer.speaker_change); mono voice attribution only; 0: never.
    voice_change_distance: float = 0.45

    def __post_init__(self) -> None:
        if self.engine not in VAD_ENGINES:
            raise UserError(f"vad.engine must be one of {', '.join(VAD_ENGINES)}, got {self.engine!r}")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise UserError(f"VAD aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.frame_ms not in VAD_FRAME_MS:
            raise UserError(f"VAD frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        for name in ("preroll_ms", "hangover_ms", "min_speech_ms", "split_search_ms", "voice_change_distance"):
            if getattr(self, name) < 0:
                raise UserError(f"segmenter {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.split_search_ms / 1000 < self.max_utterance_s:
            raise UserError(
                f"segmenter needs 0 < split_search_ms ({self.split_search_ms}) "
                f"< max_utterance_s ({self.max_utterance_s}) * 1000"
            )

    def frames(self, ms: float) -> int:
        """Whole frames in `ms` milliseconds (rounded up, at least 0)."""
        return -(-int(ms) // self.frame_ms)


QUIET_DB = 35.0  # a frame this far below the utterance's loud frames (90th percentile) is a pause


class SpeakerChange(Protocol):
    """Where an utterance changes voice (``streamer.speaker_change.SpeakerChangeDetector``)."""

    def cuts(self, audio: np.ndarray, pauses: list[tuple[int, int]]) -> list[int]:
        """audio: float32 [n_samples] at 16 kHz; pauses: (start, end) sample spans of its internal
        pauses, in order. Returns the indices into ``pauses`` to cut at, ascending."""
        ...


class VoiceDetector:
    """webrtcvad at one aggressiveness: is this 10/20/30 ms int16 frame speech?"""

    def __init__(self, aggressiveness: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: Frame) -> bool:
        return self._vad.is_speech(frame.pcm.tobytes(), SAMPLE_RATE)


class SileroDetector:
    """Silero VAD (the ``silero-vad`` package's bundled model, MIT, no download): is this frame speech?

    The model scores windows of 512 samples (32 ms) with a recurrent state, so frames are
    buffered into windows; a frame takes the decision of the latest window complete at its end.
    Hysteresis as in silero-vad's own iterator: speech from a probability of ``threshold``, and
    it stays speech until the probability falls below ``threshold - 0.15``. One model (and
    state) per detector: one per channel. Costs ~1-5 ms of CPU per window (torch, one thread).
    """

    WINDOW = 512  # samples per model call at 16 kHz

    def __init__(self, threshold: float = 0.5) -> None:
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise UserError("vad.engine = silero needs the silero-vad package: pip install silero-vad") from None
        import torch

        self._torch = torch
        self._model = load_silero_vad()
        self.threshold = threshold
        self._pending = np.zeros(0, np.float32)  # samples not yet scored, float32 in [-1, 1]
        self._speech = False

    def is_speech(self, frame: Frame) -> bool:
        self._pending = np.concatenate([self._pending, frame.pcm.astype(np.float32) / 32768.0])
        while len(self._pending) >= self.WINDOW:
            window, self._pending = self._pending[: self.WINDOW], self._pending[self.WINDOW :]
            with self._torch.inference_mode():
                p = float(self._model(self._torch.from_numpy(window), SAMPLE_RATE))
            self._speech = p >= self.threshold or (self._speech and p >= self.threshold - 0.15)
        return self._speech


VAD_ENGINES = ("webrtcvad", "silero")


class Segmenter:
    """Stage: Frames of one channel in, Utterances out (no I/O).

    feed(frame) -> utterances decided by this frame; flush() -> the open one at end of stream.
    `decided_at` is the end of the frame that settled the utterance (stream seconds).
    """

    def __init__(self, config: SegmenterConfig, channel: int = 0, ids: Iterator[int] | None = None,
                 speaker_change: SpeakerChange | None = None):
        self.config = config
        self.channel = channel
        self._ids = ids if ids is not None else itertools.count()
        self.speaker_change = speaker_change
        self._vad = SileroDetector() if config.engine == "silero" else VoiceDetector(config.aggressiveness)
        self._preroll: deque[Frame] = deque(maxlen=config.frames(config.preroll_ms))
        self._frames: list[Frame] = []  # the open utterance, preroll included; [] when idle
        self._voiced: list[bool] = []  # VAD decision per frame of self._frames
        self._silence_run = 0  # consecutive non-speech frames at the end of self._frames
        self._reserved: list[int] = []  # ids handed out for the open utterance's parts, in order
        self._parts_memo: tuple[tuple[float, int], list[tuple[int, int]]] | None = None  # see _parts

    def feed(self, frame: Frame) -> list[Utterance]:
        if frame.channel != self.channel:
            raise ValueError(f"segmenter of channel {self.channel} fed channel {frame.channel}")
        if len(frame.pcm) * 1000 != self.config.frame_ms * SAMPLE_RATE:
            raise ValueError(f"frame of {len(frame.pcm)} samples, config says {self.config.frame_ms} ms")
        speech = self._vad.is_speech(frame)
        if not self._frames:
            if not speech:
                self._preroll.append(frame)
                return []
            self._frames = list(self._preroll)
            self._voiced = [False] * len(self._frames)
            self._preroll.clear()
        self._frames.append(frame)
        self._voiced.append(speech)
        self._silence_run = 0 if speech else self._silence_run + 1
        if self._silence_run >= self.config.frames(self.config.hangover_ms):
            return self._close(decided_at=frame.end)
        if frame.end - self._frames[0].start >= self.config.max_utterance_s:
            return self._split(decided_at=frame.end)
        return []

    def in_progress(self) -> Utterance | None:
        """The open utterance so far, while speech goes on; None when idle, in a pause (the
        last frame was not speech), or with fewer than ``min_speech_ms`` voiced so far.

        Its id is reserved: the utterance this one grows into is decided with the same id.
        ``end`` and ``decided_at`` are the end of the last frame fed (stream seconds).
        """
        voiced_ms = sum(self._voiced) * self.config.frame_ms
        if not self._frames or self._silence_run or voiced_ms < self.config.min_speech_ms:
            return None
        return self._utterance(self._frames, self._reserve(1)[0], decided_at=self._frames[-1].end)

    def ending(self) -> Utterance | None:
        """The open utterance as it will be decided if the current pause goes on, once the pause
        is half the hangover long; None otherwise (idle, speaking, a shorter pause, too little
        speech). Same id, audio, start and end as the utterance ``feed`` returns when the
        hangover runs out, so work on it can start before that decision. Where a speaker change
        cuts the utterance, this is its last part (the earlier parts come with it when decided)."""
        if self._silence_run < max(1, self.config.frames(self.config.hangover_ms / 2)):
            return None
        last_voiced = max((i for i, v in enumerate(self._voiced) if v), default=-1)
        if sum(self._voiced) * self.config.frame_ms < self.config.min_speech_ms:
            return None
        parts = self._parts(self._frames[: last_voiced + 1], self._voiced[: last_voiced + 1])
        first, last = parts[-1]
        return self._utterance(self._frames[first:last], self._reserve(len(parts))[-1], self._frames[-1].end, len(parts) > 1)

    def flush(self) -> list[Utterance]:
        """End of stream: close the open utterance, if any."""
        if not self._frames:
            return []
        return self._close(decided_at=self._frames[-1].end)

    def _close(self, decided_at: float) -> list[Utterance]:
        """End the utterance at its last voiced frame; the frames after it become preroll."""
        last_voiced = max(i for i, v in enumerate(self._voiced) if v)
        utterance = self._cut(last_voiced + 1, decided_at)
        self._preroll.extend(self._frames)
        self._frames, self._voiced, self._silence_run = [], [], 0
        return utterance

    def _split(self, decided_at: float) -> list[Utterance]:
        """Cut a long utterance after its quietest frame in the last split_search_ms."""
        search = self.config.frames(self.config.split_search_ms)
        tail = self._frames[-search:]
        energies = [float(np.mean(f.pcm.astype(np.float32) ** 2)) for f in tail]
        upto = len(self._frames) - len(tail) + int(np.argmin(energies)) + 1
        utterance = self._cut(upto, decided_at)
        if not any(self._voiced):  # only silence after the split point: back to IDLE
            self._preroll.extend(self._frames)
            self._frames, self._voiced = [], []
        return utterance

    def _cut(self, upto: int, decided_at: float) -> list[Utterance]:
        """Make frames[:upto] an utterance (unless too little of it is voiced), or one per part
        where the voice changes; keep the rest."""
        frames, voiced = self._frames[:upto], self._voiced[:upto]
        self._frames, self._voiced = self._frames[upto:], self._voiced[upto:]
        if sum(voiced) * self.config.frame_ms < self.config.min_speech_ms:
            self._reserved = []
            return []
        parts = self._parts(frames, voiced)
        ids = self._reserve(len(parts))
        self._reserved = []
        return [self._utterance(frames[a:b], id, decided_at, k > 0) for k, ((a, b), id) in enumerate(zip(parts, ids))]

    def _reserve(self, n: int) -> list[int]:
        """The ids of the open utterance's first ``n`` parts, drawn once and kept until it is cut
        (so an interim result or work ahead carries the id of the utterance finally decided)."""
        while len(self._reserved) < n:
            self._reserved.append(next(self._ids))
        return self._reserved[:n]

    def _parts(self, frames: list[Frame], voiced: list[bool]) -> list[tuple[int, int]]:
        """[first, end) frame ranges of the utterance ``frames`` after cutting it at speaker
        changes; the whole range without a detector or a change. Memoised on the utterance's
        start and length, so ``ending`` and the decision ask the detector once."""
        key = (frames[0].start, len(frames))
        if self._parts_memo is not None and self._parts_memo[0] == key:
            return self._parts_memo[1]
        parts = [(0, len(frames))]
        pauses = internal_pauses(voiced) if self.speaker_change is not None else []
        if self.speaker_change is not None:
            # webrtcvad may miss a pause of ~0.1 s (it lags behind the end of speech); a frame far
            # quieter than the utterance's speech counts as a pause too
            energy = np.array([np.mean(f.pcm.astype(np.float32) ** 2) for f in frames])
            quiet = energy < np.percentile(energy[np.array(voiced)], 90) * 10 ** (-QUIET_DB / 10)
            pauses = internal_pauses([v and not q for v, q in zip(voiced, quiet)])
        if pauses:
            n = len(frames[0].pcm)
            audio = np.concatenate([f.pcm for f in frames]).astype(np.float32) / 32768.0
            cuts = [pauses[i] for i in self.speaker_change.cuts(audio, [(a * n, b * n) for a, b in pauses])]
            preroll = self.config.frames(self.config.preroll_ms)
            bounds = [(0, 0)] + [(a, max(a, b - preroll)) for a, b in cuts] + [(len(frames), len(frames))]
            parts = [(left[1], right[0]) for left, right in zip(bounds, bounds[1:])]
        self._parts_memo = (key, parts)
        return parts

    def _utterance(self, frames: list[Frame], id: int, decided_at: float, voice_change: bool = False) -> Utterance:
        audio = np.concatenate([f.pcm for f in frames]).astype(np.float32) / 32768.0
        return Utterance(
            id=id, channel=self.channel, start=frames[0].start, end=frames[-1].end,
            audio=audio, decided_at=decided_at, voice_change=voice_change,
        )


def internal_pauses(voiced: list[bool]) -> list[tuple[int, int]]:
    """[start, end) frame ranges of the non-speech runs between the first and the last voiced
    frame of ``voiced`` (a VAD decision per frame), in order."""
    pauses, start = [], None
    first = voiced.index(True) if True in voiced else len(voiced)
    for i in range(first, len(voiced)):
        if not voiced[i] and start is None:
            start = i
        elif voiced[i] and start is not None:
            pauses.append((start, i))
            start = None
    return pauses
