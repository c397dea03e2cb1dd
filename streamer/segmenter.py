"""Voice activity segmentation: frames of one channel in, utterances out (webrtcvad).

State machine per channel: IDLE keeps the last `preroll_ms` of frames; a voiced frame opens an
utterance (with that preroll in front); `hangover_ms` of consecutive non-speech closes it at the
end of its last voiced frame (webrtcvad itself lags ~0.1 s behind the end of speech); an
utterance with less than `min_speech_ms` of voiced frames is dropped as a click; one reaching
`max_utterance_s` is split at its quietest frame within the last `split_search_ms`, and the rest
goes on as the next utterance.

Speaker changes inside an utterance: two parties often answer each other after a pause shorter
than the hangover, and then both turns would land in one utterance. When a ``SpeakerChange``
detector is given (mono voice attribution), the segmenter tests the pauses inside the open
utterance (runs of non-speech frames between voiced ones) as the stream goes on, each once: as
soon as ``lookahead_s`` of speech follows a pause, the detector compares the voices on either
side (``streamer.speaker_change``), and where they differ the part before the pause is decided at
once (it ends at its last voiced frame; the rest goes on as a new utterance, starting up to
``preroll_ms`` before its first voiced frame, marked ``voice_change``). Pauses that the
utterance's end comes too soon after are tested when it is decided, with the audio there is.
``ending`` offers the parts as they will be decided, so work on them can start during the
hangover; the tests it makes are kept for the decision. ``cut_candidate`` offers the part a
pending test would cut, so work on it can start while the test waits for its lookahead.

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
from streamer.framing import VAD_FRAME_MS, frames_audio, from_pcm16
from streamer.records import SAMPLE_RATE, Frame, Utterance
from streamer.speaker_change import SpeakerChangeConfig


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
    # (CAM++ cosine distance, streamer.speaker_change; 0.05 more where a side is under 1 s);
    # mono voice attribution only; 0: never.
    voice_change_distance: float = 0.41

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
QUIET = 10 ** (-QUIET_DB / 10)  # the same as a power ratio


class SpeakerChange(Protocol):
    """Whether the voice changes at a pause (``streamer.speaker_change.SpeakerChangeDetector``)."""

    config: SpeakerChangeConfig  # how much audio either side of a pause is looked at

    def changed(self, audio: np.ndarray, pause: tuple[int, int]) -> bool:
        """audio: float32 [n_samples] at 16 kHz, the stretch around the pause; pause: its
        (start, end) samples into ``audio``. True where another voice speaks after it."""
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
        self._pending = np.concatenate([self._pending, from_pcm16(frame.pcm)])
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
        self._power: list[float] = []  # mean square of each frame of self._frames (int16 units)
        self._loudest = 0.0  # the largest power of a voiced frame in self._frames
        self._silence_run = 0  # consecutive non-speech frames at the end of self._frames
        self._reserved: list[int] = []  # ids handed out for the open utterance's parts, in order
        self._tested = 0  # inner pauses starting before this frame of self._frames have been tested
        self._checked = 0  # pauses ending up to this frame of self._frames have had their chance (_look)
        self._voice_change = False  # the open utterance was cut from the one before at a voice change
        self._decisions: dict[tuple[float, int, int, int], bool] = {}  # speaker-change tests, see _changed
        self._one_voice: list[tuple[float, float]] = []  # stream seconds of the tested stretches that did not change

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
            self._keep(list(self._preroll), [False] * len(self._preroll), [_power(f) for f in self._preroll])
            self._preroll.clear()
        self._frames.append(frame)
        self._voiced.append(speech)
        self._power.append(_power(frame))
        if speech:
            self._loudest = max(self._loudest, self._power[-1])
        self._silence_run = 0 if speech else self._silence_run + 1
        if self._silence_run >= self.config.frames(self.config.hangover_ms):
            return self._close(decided_at=frame.end)
        parts = self._look(decided_at=frame.end) if speech and self.speaker_change is not None else []
        if frame.end - self._frames[0].start >= self.config.max_utterance_s:
            return parts + self._split(decided_at=frame.end)
        return parts

    def in_progress(self) -> Utterance | None:
        """The open utterance so far, while speech goes on; None when idle, in a pause (the
        last frame was not speech), or with fewer than ``min_speech_ms`` voiced so far.

        Its id is reserved: the utterance this one grows into is decided with the same id.
        ``end`` and ``decided_at`` are the end of the last frame fed (stream seconds).
        """
        voiced_ms = sum(self._voiced) * self.config.frame_ms
        if not self._frames or self._silence_run or voiced_ms < self.config.min_speech_ms:
            return None
        return self._utterance(self._frames, self._reserve(1)[0], self._frames[-1].end, self._voice_change)

    def ending(self) -> list[Utterance]:
        """The open utterance as it will be decided if the current pause goes on, once the pause
        is half the hangover long; [] otherwise (idle, speaking, a shorter pause, too little
        speech). The same ids, audio, start and end as the utterances ``feed`` returns when the
        hangover runs out, so work on them can start before that decision: one utterance, or
        its parts where a pause still to be tested turns out to be a speaker change."""
        if self._silence_run < max(1, self.config.frames(self.config.hangover_ms / 2)):
            return []
        if sum(self._voiced) * self.config.frame_ms < self.config.min_speech_ms:
            return []
        parts = self._parts(self._last_voiced() + 1)
        ids = self._reserve(len(parts))
        return [self._utterance(self._frames[a:b], id, self._frames[-1].end, k > 0 or self._voice_change)
                for k, ((a, b), id) in enumerate(zip(parts, ids))]

    def cut_candidate(self) -> Utterance | None:
        """The part before the next inner pause still to be tested, as ``feed`` returns it if the
        voice turns out to change there (the same id and audio), so work on it can start during
        the ``lookahead_s`` the test waits for; None without a speaker-change detector, while no
        such pause has ended, or where too little of the part precedes the pause to be tested."""
        if self.speaker_change is None or not self._frames:
            return None
        min_side = self._side_frames(self.speaker_change.config.min_side_s)
        for a, _ in self._pauses(len(self._frames)):
            if a >= self._tested and a >= min_side:
                return self._utterance(self._frames[:a], self._reserve(1)[0], self._frames[-1].end, self._voice_change)
        return None

    def flush(self) -> list[Utterance]:
        """End of stream: close the open utterance, if any."""
        if not self._frames:
            return []
        return self._close(decided_at=self._frames[-1].end)

    def _close(self, decided_at: float) -> list[Utterance]:
        """End the utterance at its last voiced frame; the frames after it become preroll."""
        utterances = self._cut(self._last_voiced() + 1, decided_at)
        self._preroll.extend(self._frames)
        self._keep([], [], [])
        self._silence_run = 0
        return utterances

    def _split(self, decided_at: float) -> list[Utterance]:
        """Cut a long utterance after its quietest frame in the last split_search_ms."""
        search = self.config.frames(self.config.split_search_ms)
        tail = self._power[-search:]
        upto = len(self._frames) - len(tail) + int(np.argmin(tail)) + 1
        utterances = self._cut(upto, decided_at)
        if not any(self._voiced):  # only silence after the split point: back to IDLE
            self._preroll.extend(self._frames)
            self._keep([], [], [])
        return utterances

    def _cut(self, upto: int, decided_at: float) -> list[Utterance]:
        """Make frames[:upto] an utterance (unless too little of it is voiced), or one per part
        where the voice changes; keep the rest, as a new utterance."""
        voiced_ms = sum(self._voiced[:upto]) * self.config.frame_ms
        parts = self._parts(upto) if voiced_ms >= self.config.min_speech_ms else []
        ids = self._reserve(len(parts))
        utterances = [self._utterance(self._frames[a:b], id, decided_at, k > 0 or self._voice_change)
                      for k, ((a, b), id) in enumerate(zip(parts, ids))]
        self._drop(upto)
        self._reserved, self._tested, self._checked, self._voice_change = [], 0, 0, False
        self._decisions.clear()
        self._one_voice.clear()
        return utterances

    def _look(self, decided_at: float) -> list[Utterance]:
        """Test each inner pause that ``lookahead_s`` of speech now follows; where the voice has
        changed, close the part before the pause at once (streamer.speaker_change)."""
        lookahead = self._side_frames(self.speaker_change.config.lookahead_s)
        newly = range(self._checked + 1, len(self._frames) - lookahead + 1)  # pause ends that got their lookahead
        self._checked = max(self._checked, len(self._frames) - lookahead)
        if not self._may_end_pause(newly):
            return []
        parts: list[Utterance] = []
        while ripe := [(a, b) for a, b in self._pauses(len(self._frames))
                       if a >= self._tested and len(self._frames) - b >= lookahead]:
            a, b = ripe[0]
            self._tested = b
            if self._changed(0, a, b, b + lookahead):
                parts.append(self._utterance(self._frames[:a], self._reserve(1)[0], decided_at, self._voice_change))
                self._reserved.pop(0)
                start = max(a, b - self.config.frames(self.config.preroll_ms))  # the next part's preroll
                self._drop(start)
                self._tested, self._checked, self._voice_change = b - start, self._checked - start, True
        return parts

    def _may_end_pause(self, frames: range) -> bool:
        """Cheap: whether a pause may end at one of ``frames`` (a voiced frame after one that is
        not voiced, or is quiet enough to be a pause even next to the loudest frame so far)."""
        for j in frames:
            if j < 1 or not self._voiced[j]:
                continue
            if not self._voiced[j - 1]:
                return True
            if self._power[j - 1] < self._loudest * QUIET:
                return True
        return False

    def _parts(self, upto: int) -> list[tuple[int, int]]:
        """[first, end) frame ranges of frames[:upto], cut where a pause not yet tested turns out
        to be a speaker change (tested now, with the audio up to ``upto`` after it); the whole
        range without a detector or a change."""
        if self.speaker_change is None:
            return [(0, upto)]
        lookahead = self._side_frames(self.speaker_change.config.lookahead_s)
        min_side = self._side_frames(self.speaker_change.config.min_side_s)
        parts, start = [], 0
        for a, b in self._pauses(upto):
            if a >= self._tested and upto - b >= min_side and self._changed(start, a, b, min(upto, b + lookahead)):
                parts.append((start, a))
                start = max(a, b - self.config.frames(self.config.preroll_ms))
        return parts + [(start, upto)]

    def _changed(self, start: int, a: int, b: int, end: int) -> bool:
        """Whether the voice changes at the pause frames[a:b] of the part that starts at frame
        ``start``: False with less than ``min_side_s`` before it, else the detector's answer on
        frames[max(start, a - window):end]. Kept until the utterance is decided (``ending``
        asks before the decision; the decision then finds the answer), and where the voice did not
        change, the stretch is noted for the parts that hold it (``Utterance.one_voice``)."""
        config = self.speaker_change.config
        if a - start < self._side_frames(config.min_side_s):
            return False
        first = max(start, a - self._side_frames(config.window_s))
        key = (self._frames[first].start, end - first, a - first, b - first)
        if key not in self._decisions:
            audio = frames_audio(self._frames[first:end])
            n = len(self._frames[0].pcm)
            self._decisions[key] = self.speaker_change.changed(audio, ((a - first) * n, (b - first) * n))
            if not self._decisions[key]:
                self._one_voice.append((self._frames[first].start, self._frames[end - 1].end))
        return self._decisions[key]

    def _pauses(self, upto: int) -> list[tuple[int, int]]:
        """[start, end) frame ranges of the inner pauses of frames[:upto] worth testing: runs of
        at least ``min_pause_s`` of non-speech frames between speech, where a frame far quieter
        than the speech so far counts as non-speech too (webrtcvad may miss a pause of ~0.1 s:
        it lags behind the end of speech)."""
        voiced = np.array(self._voiced[:upto])
        if not voiced.any():
            return []
        power = np.array(self._power[:upto])
        quiet = power < np.percentile(power[voiced], 90) * QUIET
        shortest = self._side_frames(self.speaker_change.config.min_pause_s)
        return [(a, b) for a, b in internal_pauses(list(voiced & ~quiet)) if b - a >= shortest]

    def _side_frames(self, seconds: float) -> int:
        return self.config.frames(seconds * 1000)

    def _last_voiced(self) -> int:
        return max(i for i, v in enumerate(self._voiced) if v)

    def _drop(self, upto: int) -> None:
        """Forget frames[:upto] of the open utterance."""
        self._keep(self._frames[upto:], self._voiced[upto:], self._power[upto:])

    def _keep(self, frames: list[Frame], voiced: list[bool], power: list[float]) -> None:
        """Make these the open utterance's frames, VAD decisions and powers."""
        self._frames, self._voiced, self._power = frames, voiced, power
        self._loudest = max((p for p, v in zip(power, voiced) if v), default=0.0)

    def _reserve(self, n: int) -> list[int]:
        """The ids of the open utterance's first ``n`` parts, drawn once and kept until it is cut
        (so an interim result or work ahead carries the id of the utterance finally decided)."""
        while len(self._reserved) < n:
            self._reserved.append(next(self._ids))
        return self._reserved[:n]

    def _utterance(self, frames: list[Frame], id: int, decided_at: float, voice_change: bool = False) -> Utterance:
        start, end = frames[0].start, frames[-1].end
        return Utterance(
            id=id, channel=self.channel, start=start, end=end,
            audio=frames_audio(frames), decided_at=decided_at, voice_change=voice_change,
            one_voice=tuple(s for s in self._one_voice if start <= s[0] and s[1] <= end),
        )


def _power(frame: Frame) -> float:
    """Mean square of a frame's int16 samples."""
    return float(np.mean(frame.pcm.astype(np.float32) ** 2))


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
