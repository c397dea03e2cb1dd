"""Speaker attribution: which party of a two-party conversation spoke an utterance.

Three policies behind one interface, ``SpeakerAttributor.assign(utterance, encoder_states)``:

- ``channel``: stereo input, one channel per speaker; the channel index picks the speaker.
- ``voice``: mono input; online two-speaker clustering of a per-utterance voice print.
- ``single``: ``--speakers 1``, everything is A.

Voice prints (``VoiceFeature``), compared by ``benchmarks/speaker_attribution.py`` (numbers in
docs/benchmarks.md, "Speaker attribution"):

- ``campplus`` (default): the 192-d CAM++ speaker embedding (``models.frontends.speaker``), a
  neural network trained for speaker verification, then (round 10) the utterance's spectral
  ``envelope`` [40]; clustered by ``EmbeddingClustering``: every print is kept and the whole
  history is re-clustered after each utterance, so an early wrong guess is corrected for the
  utterances that follow. The raw rules compare the CAM++ embeddings; a learned projection of
  the whole print (LDAs over synthetic voices) tells synthetic voices apart where their turns
  are tight in it and they sound synthetic (round 7: near the voices it was learned on).
- ``pitch``: median F0 of the voiced frames in semitones, divided by PITCH_UNIT_ST.
- ``mfcc``: mean MFCC 1..19 of the voiced frames, index-weighted (k * c_k, the classic liftered
  cepstral distance) and divided by CEPSTRUM_UNIT.
- ``pitch_mfcc``: both, concatenated (the default before CAM++).
- ``campplus_mfcc``: the CAM++ embedding and the ``mfcc`` print, each a unit vector, the latter
  centred on MFCC_CENTRE and weighted by MFCC_WEIGHT; clustered like ``campplus``. CAM++ alone
  hardly tells espeak-ng's synthetic voices apart when their pitch changes from turn to turn,
  while cepstra do. Measured, not the default: espeak-ng dialogues 0.74 (campplus 0.65), but
  EmoDB same-sex pairs 0.78 (campplus 0.89) and TurEV-DB 0.94 (0.96).
- ``encoder``: the Whisper encoder states of the utterance (free from the ASR pass),
  mean-pooled. Measured near chance: the final states carry words, not voices.

The hand-made prints are clustered by ``VoiceClustering``: the first utterance is A; until B
exists, an utterance farther than ``new_speaker_distance`` from A's centroid opens B; afterwards
each utterance goes to the nearer centroid. No look-ahead: an assignment is final when made.

The units and the default distances were calibrated on TurEV-DB (the development set) and are
reported on EmoDB and espeak-ng dialogues (the test sets); campplus's distance and evidence
rule on TurEV-DB together with espeak-ng dialogues of voices the test pairs do not use; its
turn-taking allowance (round 5) on those dialogues, rendered end to end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamer.errors import UserError
from streamer.records import SAMPLE_RATE, Speaker, Utterance

if TYPE_CHECKING:
    from models.frontends.speaker import SpeakerEmbedder, VoiceProjection

FRAME_S = 0.025  # analysis window, seconds
HOP_S = 0.010  # analysis hop, seconds
N_FFT = 512  # samples (32 ms at 16 kHz), >= the 25 ms window
N_MELS = 40
N_MFCC = 20  # coefficient 0 (loudness) is dropped, 1..19 kept
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
PITCH_FRAME_S = 0.040  # two periods of the lowest F0
VOICING_THRESHOLD = 0.5  # normalised autocorrelation peak above which a frame is voiced
ACTIVE_DB = 40.0  # frames within this many dB of the loudest frame are speech
MIN_VOICED_FRAMES = 5  # fewer voiced frames than this: the utterance's F0 is unknown (NaN)
CAMPPLUS_DIM = 192  # the CAM++ embedding's size (models.frontends.speaker.EMBEDDING_DIM, without importing torch)
# Voice-print units (chosen on TurEV-DB): a distance of 1 is PITCH_UNIT_ST semitones of median
# F0, or CEPSTRUM_UNIT of index-weighted cepstrum (k * c_k, natural-log-mel units).
PITCH_UNIT_ST = 3.0  # semitones; about the within-speaker spread of an utterance's median F0
CEPSTRUM_UNIT = 40.0
# campplus_mfcc: the mean ``mfcc`` print of the synthetic development dialogues (espeak-ng voices
# not used in the test pairs; runs/spk2 scratch harness), and the weight of its unit vector beside
# the unit CAM++ embedding (swept 0.3-0.7 on those dialogues and TurEV-DB).
MFCC_CENTRE = np.array([0.31, 0.08, 0.59, -0.44, -0.26, -0.02, -0.78, 0.37, -0.35, 0.34, -0.31, -0.12,
                        -0.06, -0.13, -0.34, 0.01, -0.31, -0.19, -0.25])
MFCC_WEIGHT = 0.5


def _frames(audio: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """audio float32 [n_samples] -> overlapping frames [n_frames, frame] (zero-padded tail)."""
    if len(audio) < frame:
        audio = np.pad(audio, (0, frame - len(audio)))
    n = 1 + (len(audio) - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    return audio[index]


def _mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1] from 60 Hz to 7.6 kHz."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(60.0)), mel(np.array(7600.0)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II basis [n_out, n_in]."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


_MEL = _mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE)
_DCT = _dct_matrix(N_MFCC, N_MELS)


@dataclass(frozen=True)
class _Frames:
    """Per-frame analysis on a 10 ms grid: log_mel [n, N_MELS]; active, voiced: bool [n];
    semitones: float [n], F0 in semitones above 55 Hz (meaningful where voiced)."""

    log_mel: np.ndarray
    active: np.ndarray
    voiced: np.ndarray
    semitones: np.ndarray


def _analyse(audio: np.ndarray) -> _Frames:
    """Log-mel spectrum, activity and autocorrelation pitch of audio float32 [n_samples].

    A frame is active within ACTIVE_DB of the loudest frame. Its F0 period is the lag, between
    1/F0_MAX_HZ and 1/F0_MIN_HZ, of the highest autocorrelation of its 40 ms window; it is voiced
    when also active and the normalised (unbiased) autocorrelation there exceeds VOICING_THRESHOLD.
    """
    audio = audio.astype(np.float32)
    hop = int(HOP_S * SAMPLE_RATE)
    window = int(FRAME_S * SAMPLE_RATE)
    power = np.abs(np.fft.rfft(_frames(audio, window, hop) * np.hanning(window), N_FFT)) ** 2
    log_mel = np.log(power @ _MEL.T + 1e-10)  # [n_frames, n_mels]
    energy_db = 10.0 * np.log10(power.sum(axis=1) + 1e-10)

    window = int(PITCH_FRAME_S * SAMPLE_RATE)
    frames = _frames(audio, window, hop)
    frames = frames - frames.mean(axis=1, keepdims=True)
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * window)) ** 2, 2 * window)[:, :window]
    acf = acf / np.maximum(acf[:, :1], 1e-12)  # acf[:, 0] = 1
    lo, hi = int(SAMPLE_RATE / F0_MAX_HZ), int(SAMPLE_RATE / F0_MIN_HZ)
    # The biased autocorrelation shrinks with the lag, so it picks the period, not a multiple;
    # the voicing decision uses the unbiased value at that lag.
    best = lo + np.argmax(acf[:, lo:hi], axis=1)  # lag of the F0 period, samples
    peak = acf[np.arange(len(acf)), best] * window / (window - best)

    n = min(len(log_mel), len(best))  # the 40 ms grid is a frame or two shorter
    active = energy_db[:n] > energy_db.max() - ACTIVE_DB
    return _Frames(
        log_mel=log_mel[:n],
        active=active,
        voiced=active & (peak[:n] > VOICING_THRESHOLD),
        semitones=12.0 * np.log2(SAMPLE_RATE / best[:n] / 55.0),
    )


class SpeakerMode(str, Enum):
    """How utterances are attributed to speakers (``--speakers`` / config)."""

    CHANNEL = "channel"
    VOICE = "voice"
    SINGLE = "single"


class VoiceFeature(str, Enum):
    """Which voice print the ``voice`` mode clusters (see the module docstring)."""

    CAMPPLUS = "campplus"
    PITCH = "pitch"
    MFCC = "mfcc"
    PITCH_MFCC = "pitch_mfcc"
    CAMPPLUS_MFCC = "campplus_mfcc"
    ENCODER = "encoder"


# Distance (in voice-print units) beyond which an utterance opens speaker B: the best dialogue
# accuracy on TurEV-DB (benchmarks/speaker_attribution.py sweeps it). Low values favour opening B
# early; the price is that a one-speaker stream gets split (use SpeakerMode.SINGLE for that).
DEFAULT_NEW_SPEAKER_DISTANCE = {
    # cosine distance (1 - cos) of the groups' mean embeddings, see EmbeddingClustering; the best mean
    # dialogue accuracy over TurEV-DB and synthetic dev voices that keeps one voice on A as often
    # as 0.4 with the per-utterance evidence rule did
    VoiceFeature.CAMPPLUS: 0.35,
    VoiceFeature.PITCH: 0.5,
    VoiceFeature.MFCC: 1.5,
    VoiceFeature.PITCH_MFCC: 1.5,
    VoiceFeature.CAMPPLUS_MFCC: 0.35,  # as campplus, on the fused unit vector
    VoiceFeature.ENCODER: 8.0,
}


@dataclass(frozen=True)
class SpeakerConfig:
    """Speaker attribution settings.

    mode: the policy. channel_map: the speaker of each input channel (``channel`` mode), index =
    channel. feature: the voice print (``voice`` mode). new_speaker_distance: voice-print
    distance (units of the feature, see VoiceFeature) beyond which an utterance opens speaker B;
    None takes DEFAULT_NEW_SPEAKER_DISTANCE for the feature.
    """

    mode: SpeakerMode = SpeakerMode.VOICE
    channel_map: tuple[Speaker, ...] = (Speaker.A, Speaker.B)
    feature: VoiceFeature = VoiceFeature.CAMPPLUS
    new_speaker_distance: float | None = None

    def __post_init__(self) -> None:
        if self.new_speaker_distance is not None and not self.new_speaker_distance > 0:
            raise UserError(f"speaker distance must be > 0, got {self.new_speaker_distance}")
        if not self.channel_map:
            raise UserError("the channel map must name a speaker for at least one channel")

    @property
    def distance(self) -> float:
        """The effective new-speaker distance, voice-print units."""
        if self.new_speaker_distance is not None:
            return self.new_speaker_distance
        return DEFAULT_NEW_SPEAKER_DISTANCE[self.feature]


class SpeakerAttributor(Protocol):
    """A stateful policy; call ``assign`` once per utterance, in stream order.

    ``print_of`` is the pure, costly part (the voice print: ~10 ms for pitch_mfcc, a CAM++ pass for
    campplus), so the pipeline can compute it while the VAD is still deciding that the utterance
    ended, and hand it to ``assign``. ``names`` lets an attributor that revisits earlier
    utterances say what it calls them now; the pipeline compares that with what it emitted.
    """

    def print_of(self, utterance: Utterance, encoder_states: np.ndarray | None) -> np.ndarray | None:
        """What ``assign`` needs from the utterance (its voice print), or None; changes no state."""
        ...

    def assign(self, utterance: Utterance, encoder_states: np.ndarray | None,
               voice: np.ndarray | None = None) -> Speaker:
        """The speaker of ``utterance``; encoder_states: float32 [n_frames, d_model] or None;
        voice: ``print_of(utterance, encoder_states)`` when already computed."""
        ...

    def names(self) -> list[Speaker] | None:
        """The current name of each utterance assigned so far (the latest ones, oldest first),
        or None for an attributor that never changes a name it gave."""
        ...


class Rule(str, Enum):
    """Which of ``EmbeddingClustering``'s rules named the latest utterance."""

    NO_SPLIT = "no split stood"  # one voice so far: every utterance A
    RAW = "raw"  # the raw split's distance passed its bar
    LINKED = "voice-change links"
    PROJECTED = "projected"
    EARLY = "projected, early"  # the projected rule on EARLY_MIN_UTTERANCES a group


@dataclass(frozen=True)
class Decision:
    """How ``EmbeddingClustering`` named its latest utterance, for error analysis: the rule, the
    prints clustered, and the raw split's distance between its groups' mean directions with the
    bar it had to pass (cosine distance; NaN where the projected rule decided first or 2-means
    found a single group)."""

    rule: Rule
    prints: int
    raw_distance: float = float("nan")
    raw_bar: float = float("nan")


class SpeakerRevisions:
    """The speakers emitted for the latest REVISABLE utterances, to tell which of them an
    attributor's current ``names()`` has changed since."""

    REVISABLE = 32  # utterances back that a revision may reach

    def __init__(self) -> None:
        self._emitted: deque[tuple[int, Speaker]] = deque(maxlen=self.REVISABLE)  # (id, speaker), oldest first

    def note(self, utterance_id: int, speaker: Speaker,
             names: list[Speaker] | None) -> tuple[tuple[int, Speaker], ...]:
        """Record the new utterance's ``speaker``; ``names``: the attributor's current names,
        oldest first, the new utterance's last (None: it does not revise). Returns (id, speaker)
        of each earlier utterance whose name differs from the one last emitted, oldest first."""
        earlier = names[:-1] if names else []
        revisions = []
        # the latest utterances both know, aligned at the end: k = 1 is the one just before this
        for k in range(1, min(len(earlier), len(self._emitted)) + 1):
            utterance, shown = self._emitted[-k]
            if earlier[-k] is not shown:
                self._emitted[-k] = (utterance, earlier[-k])
                revisions.append((utterance, earlier[-k]))
        self._emitted.append((utterance_id, speaker))
        revisions.reverse()  # oldest first
        return tuple(revisions)


PRINT_S = 2.5  # seconds: a CAM++ voice print embeds at most about this much of an utterance
ONE_VOICE_MIN_S = 2.0  # seconds: the shortest one-voice stretch ``print_audio`` takes instead


def central(audio: np.ndarray, seconds: float) -> np.ndarray:
    """The central ``seconds`` of float32 audio [n_samples] at 16 kHz (all of it when shorter)."""
    limit = int(seconds * SAMPLE_RATE)
    start = max(0, (len(audio) - limit) // 2)
    return audio[start : start + limit]


def print_audio(utterance: Utterance) -> np.ndarray:
    """The audio [n_samples] an utterance's CAM++ voice print embeds: all of it up to PRINT_S;
    of a longer one, the one-voice stretch of at least ONE_VOICE_MIN_S nearest its centre that the
    speaker-change test has already embedded (``Utterance.one_voice``; 2.0-2.9 s, whose network
    pass ``SpeakerEmbedder`` still holds), else its central PRINT_S.

    A voice is told from 2.5 s about as well as from the whole utterance (dev dialogues, speaker
    accuracy: whole 0.85, central 3 s 0.85 / 0.86, 2.5 s 0.86 / 0.87, everyday / MELD), and a pass
    costs ~20 ms per second of audio; taking a stretch the test has embedded saves the pass.
    """
    audio = utterance.audio
    if len(audio) <= PRINT_S * SAMPLE_RATE:
        return audio
    middle = (utterance.start + utterance.end) / 2
    stretches = [s for s in utterance.one_voice if s[1] - s[0] >= ONE_VOICE_MIN_S]
    if not stretches:
        return central(audio, PRINT_S)
    first, last = min(stretches, key=lambda s: abs((s[0] + s[1]) / 2 - middle))
    a = round((first - utterance.start) * SAMPLE_RATE)
    return audio[a : a + round((last - first) * SAMPLE_RATE)]


def voice_print(
    feature: VoiceFeature, audio: np.ndarray, encoder_states: np.ndarray | None = None,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """One utterance's voice print, float64 [dim], in the units the distances are given in.

    audio: float32 [n_samples] at 16 kHz. encoder_states: float32 [n_frames, d_model], required
    for ``encoder``. window: the audio [m_samples] CAM++ embeds (``utterance_print`` gives
    ``print_audio``); None: the central PRINT_S of ``audio``. A NaN entry means unknown (the F0
    of an utterance without voiced frames). ``campplus``: [192 + 40], the unit CAM++ embedding of
    ``window`` (compared by cosine), then the ``envelope`` of all of ``audio`` (for the projection).
    ``campplus_mfcc``: [192 + 19], the unit CAM++ embedding of ``window``, then
    MFCC_WEIGHT times the unit vector of (mfcc print of all of ``audio`` - MFCC_CENTRE).
    """
    if window is None:
        window = central(audio, PRINT_S)
    if feature is VoiceFeature.CAMPPLUS:
        return np.concatenate([shared_embedder().embed(window), envelope(audio)])
    if feature is VoiceFeature.CAMPPLUS_MFCC:
        embedding = shared_embedder().embed(window)
        cepstrum = voice_print(VoiceFeature.MFCC, audio) - MFCC_CENTRE
        cepstrum = MFCC_WEIGHT * cepstrum / max(float(np.linalg.norm(cepstrum)), 1e-12)
        return np.concatenate([embedding / max(float(np.linalg.norm(embedding)), 1e-12), cepstrum])
    if feature is VoiceFeature.ENCODER:
        if encoder_states is None:
            raise ValueError("the encoder voice print needs the utterance's encoder states")
        return encoder_states.mean(axis=0).astype(np.float64)
    frames = _analyse(audio)
    has_voice = frames.voiced.sum() >= MIN_VOICED_FRAMES
    parts = []
    if feature in (VoiceFeature.PITCH, VoiceFeature.PITCH_MFCC):
        f0 = np.median(frames.semitones[frames.voiced]) if has_voice else np.nan
        parts.append(np.array([f0 / PITCH_UNIT_ST]))
    if feature in (VoiceFeature.MFCC, VoiceFeature.PITCH_MFCC):
        cepstrum = (_mean_log_mel(frames) @ _DCT.T)[1:]  # MFCC 1..19
        parts.append(cepstrum * np.arange(1, N_MFCC) / CEPSTRUM_UNIT)
    return np.concatenate(parts)


def _mean_log_mel(frames: _Frames) -> np.ndarray:
    """The mean log-mel spectrum [N_MELS] of the voiced frames (of the active ones when fewer
    than MIN_VOICED_FRAMES are voiced)."""
    chosen = frames.voiced if frames.voiced.sum() >= MIN_VOICED_FRAMES else frames.active
    return frames.log_mel[chosen].mean(axis=0)


def envelope(audio: np.ndarray) -> np.ndarray:
    """The spectral envelope of an utterance, float64 [N_MELS]: the mean log-mel spectrum of its
    voiced frames with its mean over the bands (the level) removed. It is what espeak-ng's voice
    variants change (formant frequencies and strengths), while turn-to-turn pitch and rate move
    it little; over the dev voices' same-sex turn pairs it tells same from different voice with
    a ROC AUC of 0.90 in its projection, against 0.82 for the projected CAM++ embedding
    (docs/benchmarks.md, "Speaker attribution", round 10). audio: float32 [n_samples], 16 kHz."""
    spectrum = _mean_log_mel(_analyse(audio))
    return (spectrum - spectrum.mean()).astype(np.float64)


def utterance_print(feature: VoiceFeature, utterance: Utterance) -> np.ndarray:
    """The voice print of an utterance for the features ``EmbeddingClustering`` clusters
    (``campplus``, ``campplus_mfcc``): CAM++ embeds ``print_audio(utterance)``, while the envelope
    of ``campplus`` and the MFCC half of ``campplus_mfcc`` read the whole utterance, as
    ``voice_print`` does for audio."""
    return voice_print(feature, utterance.audio, window=print_audio(utterance))


class SingleSpeaker:
    """``--speakers 1``: every utterance is A."""

    def print_of(self, utterance: Utterance, encoder_states: np.ndarray | None) -> None:
        return None

    def assign(self, utterance: Utterance, encoder_states: np.ndarray | None,
               voice: np.ndarray | None = None) -> Speaker:
        return Speaker.A

    def names(self) -> None:
        return None


class ChannelSpeakers:
    """Stereo input: the utterance's channel picks its speaker through ``channel_map``."""

    def __init__(self, channel_map: tuple[Speaker, ...]) -> None:
        self.channel_map = channel_map

    def print_of(self, utterance: Utterance, encoder_states: np.ndarray | None) -> None:
        return None

    def assign(self, utterance: Utterance, encoder_states: np.ndarray | None,
               voice: np.ndarray | None = None) -> Speaker:
        if not 0 <= utterance.channel < len(self.channel_map):
            raise UserError(
                f"audio channel {utterance.channel} has no speaker: the channel map covers "
                f"channels 0-{len(self.channel_map) - 1}"
            )
        return self.channel_map[utterance.channel]

    def names(self) -> None:
        return None


class VoiceClustering:
    """Online two-centroid clustering of voice prints (the ``voice`` mode).

    State: one centroid per opened speaker, the per-dimension mean of its utterances' voice
    prints (NaN entries, i.e. unknown F0, are left out of both the mean and the distance).
    """

    def __init__(self, feature: VoiceFeature, new_speaker_distance: float) -> None:
        self.feature = feature
        self.new_speaker_distance = new_speaker_distance
        self._sums: dict[Speaker, np.ndarray] = {}  # per speaker: sum of known entries [dim]
        self._counts: dict[Speaker, np.ndarray] = {}  # per speaker: known entries [dim]

    def print_of(self, utterance: Utterance, encoder_states: np.ndarray | None) -> np.ndarray:
        return voice_print(self.feature, utterance.audio, encoder_states)

    def assign(self, utterance: Utterance, encoder_states: np.ndarray | None,
               voice: np.ndarray | None = None) -> Speaker:
        return self.assign_print(voice if voice is not None else self.print_of(utterance, encoder_states))

    def names(self) -> None:
        return None

    def assign_print(self, vp: np.ndarray) -> Speaker:
        """Attribute one utterance by its voice print [dim] (from ``voice_print``)."""
        if not self._sums:
            speaker = Speaker.A
        elif len(self._sums) == 1:
            far = self.new_speaker_distance < self.distance(vp, Speaker.A) < np.inf
            speaker = Speaker.B if far else Speaker.A
        else:
            speaker = min((Speaker.A, Speaker.B), key=lambda s: self.distance(vp, s))  # tie: A
        known = ~np.isnan(vp)
        self._sums.setdefault(speaker, np.zeros_like(vp))[known] += vp[known]
        self._counts.setdefault(speaker, np.zeros_like(vp))[known] += 1
        return speaker

    def distance(self, vp: np.ndarray, speaker: Speaker) -> float:
        """Euclidean distance, voice-print units, from ``vp`` [dim] to a speaker's centroid,
        over the entries known in both (inf when none is)."""
        counts = self._counts[speaker]
        known = ~np.isnan(vp) & (counts > 0)
        if not known.any():
            return float("inf")
        centroid = self._sums[speaker][known] / counts[known]
        return float(np.linalg.norm(vp[known] - centroid))


class EmbeddingClustering:
    """Online two-speaker clustering of unit speaker embeddings that revisits its history.

    Every utterance's embedding is kept (the last MAX_HISTORY). After each utterance the whole
    history is split in two by spherical 2-means on cosine similarity (``two_means``). The split
    stands for two speakers when the cosine distance between the two groups' mean directions
    exceeds ``new_speaker_distance + EVIDENCE_DISTANCE / sqrt(s)``, s the seconds of audio in
    the smaller group (the minimum-evidence rule: the mean of little speech is noisy, and
    2-means finds a gap even in one voice; with 1 s apart the bar is 0.65, with 9 s 0.45).
    Evidence counted in seconds rather than utterances lets a few long turns of a second voice
    open B as early as many short words would (measured: docs/benchmarks.md, "Speaker
    attribution"). The split also stands, on less distance (LINKED_DISTANCE), when at least
    LINKS_NEEDED utterances were cut by the segmenter from the one before at a voice change
    (``Utterance.voice_change``) and every one of them lies on the other side than that one:
    the local comparison either side of a pause is evidence the group means do not have (one
    such cut alone may be a false one within a voice). Turn taking lowers the first bar: a split
    whose groups alternate in the stream (the share of consecutive utterances on opposite sides)
    more than ALTERNATION_BASE of the time needs up to TURN_TAKING_BONUS less distance, the whole
    of it at strict alternation. Two people in conversation mostly take turns, while a split of
    one voice falls in no such order (measured on dev dialogues: docs/benchmarks.md, "Speaker
    attribution", round 5). While the voices sound real (the gate below), the allowance grows
    with the consecutive pairs seen, the whole of it from TURN_TAKING_PAIRS on (round 11): any
    split of two utterances alternates, and real voices' first two turns are often far apart.

    With a ``project``ion (the voice projection, ``models.frontends.speaker.VoiceProjection``:
    LDAs learned on synthetic voices, of the CAM++ embedding and, since round 10, of the print's
    spectral envelope), the history is also split by 2-means in the projected
    space, and that split stands first when it is **tight**: each group holds at least
    TIGHT_MIN_UTTERANCES utterances, the mean cosine distance of each group's members to its
    mean direction is under TIGHT_SPREAD, and the groups lie more than PROJECTED_DISTANCE +
    PROJECTED_EVIDENCE / sqrt(s) apart, s the seconds in the smaller group. Synthetic voices
    whose pitch and rate change from turn to turn are tight there (spread 0.08-0.16 on dev
    voices) while real voices' word turns are not (0.23-0.47 over a speaker's turns, TurEV-DB
    and EmoDB), so the rule tells near-twin synthetic voices apart. Early on (round 8), a split
    with only EARLY_MIN_UTTERANCES in a group also stands when the groups alternate in the
    stream at least EARLY_ALTERNATION of the time and lie EARLY_FACTOR times that bar apart: two
    voices taking turns are found a few utterances sooner, while a split of one voice rarely
    alternates that much (dev: median alternation 0.33 against 0.67 for two voices). Otherwise
    there is one speaker, A. With ``synthetic`` (round 7: how
    much a print sounds like an espeak-ng voice, ``VoiceProjection.synthetic_likeness``), the
    projected rule also needs each group's mean likeness above SYNTHETIC_GATE: the projection
    was learned on synthetic voices, and a real voice's sentence-length turns can come out tight
    in it (docs/benchmarks.md, round 6), while real speakers' prints lie far from every
    synthetic voice (likeness 0.21-0.33 per speaker, dev synthetic voices 0.50-0.79). So real
    voices are left to the rules above.

    Hold (round 6): once the raw rules' split has stood and its smaller group holds
    RAW_HOLD_SECONDS of speech, their bar is RAW_HOLD lower for as long as the split keeps
    standing, so that two voices found apart are not merged back into A when their groups'
    distance sinks a little under the bar as turns accumulate (the evidence term shrinks with
    the seconds, but the groups' distance shrinks too as each voice's varied turns come in).
    Before that (round 9), while the voices sound synthetic, a split that stood at the utterance
    before and still splits the earlier utterances the same way needs EARLY_HOLD less: a second
    voice's first turn opens B on the whole turn-taking allowance, and its second turn right
    after (A B B) earns none, so without the hold the split that stood a moment ago falls and
    the second voice's next turn goes to A.

    Naming: of the two ways to call the groups A and B, the one that agrees with more of the
    speakers already emitted wins (a tie: the group of the first utterance is A). The new
    utterance gets its group's name. Emitted names do not bind the clustering: an early
    utterance put in the wrong group moves to the right one as evidence accumulates, and stops
    pulling the next utterances its way. ``names`` gives every utterance's current name, from
    which the pipeline revises the speakers it has emitted (``EmotionEvent.revisions``).
    """

    MAX_HISTORY = 400  # utterances kept; a 2-means pass over them costs well under a millisecond
    EVIDENCE_DISTANCE = 0.3  # cosine distance x sqrt(seconds); with new_speaker_distance chosen on dev data
    LINKS_NEEDED = 2  # voice-change cuts that must all fall between the groups for the second rule
    LINKED_DISTANCE = 0.15  # cosine distance between the groups enough under that rule (dev e2e dialogues)
    # Turn taking (round 5, dev e2e dialogues and TurEV-DB): a split whose groups alternate in the
    # stream more than ALTERNATION_BASE of the time needs up to TURN_TAKING_BONUS less distance
    TURN_TAKING_BONUS = 0.2  # cosine distance, at strict alternation
    ALTERNATION_BASE = 0.7  # share of consecutive utterances on opposite sides that earns nothing
    # ... and (round 11, real-voice dev dialogues) while the voices sound real (the gate below), the
    # allowance grows with the consecutive pairs seen: (n - 1) / TURN_TAKING_PAIRS of it before
    TURN_TAKING_PAIRS = 6  # consecutive utterance pairs that earn the whole allowance
    # The projected rule, chosen on the e2e dev voices and TurEV-DB (docs/benchmarks.md); since the
    # synthetic gate keeps real voices out (round 7), a looser spread bar and a larger distance
    TIGHT_MIN_UTTERANCES = 3  # utterances in each group, at least (4 in round 4; dev, round 5)
    # ... or, early on (round 8, dev voices), fewer in a split whose groups take turns and lie farther apart
    EARLY_MIN_UTTERANCES = 2  # utterances in each group, at least
    EARLY_ALTERNATION = 0.5  # share of consecutive utterances on opposite sides, at least (dev medians: 0.33 / 0.67)
    EARLY_FACTOR = 1.3  # times the projected rule's distance bar (1.6 to round 9; round 10, with the envelope)
    TIGHT_SPREAD = 0.25  # mean cosine distance to the group's direction, in either group, below this (0.16 to round 6)
    PROJECTED_DISTANCE = 0.15  # cosine distance between the groups' directions in the projected space (0.1 to round 6) ...
    PROJECTED_EVIDENCE = 0.1  # ... plus this / sqrt(seconds in the smaller group)
    # The hold (round 6, dev voices): the raw rules' bar is RAW_HOLD lower while their split stood
    # when last asked, once the smaller group holds RAW_HOLD_SECONDS of speech
    RAW_HOLD = 0.05  # cosine distance
    RAW_HOLD_SECONDS = 8.0  # seconds in the smaller group
    # ... and before that (round 9, dev voices), EARLY_HOLD lower while the voices sound synthetic
    # (the gate below) and the split splits the utterances before the newest as the one that stood
    EARLY_HOLD = 0.1  # cosine distance
    # The synthetic gate (round 7, dev voices and TurEV-DB): the projected rule needs both groups'
    # mean synthetic likeness above this (dev: real speakers 0.21-0.33, synthetic voices 0.50-0.79)
    SYNTHETIC_GATE = 0.4

    def __init__(self, new_speaker_distance: float,
                 embed: Callable[[Utterance], np.ndarray] = partial(utterance_print, VoiceFeature.CAMPPLUS),
                 project: Callable[[np.ndarray], np.ndarray] | None = None,
                 synthetic: Callable[[np.ndarray], float] | None = None, raw_dims: int | None = None) -> None:
        """embed: an utterance -> its print [dim] (the default loads CAM++ on first use, once per
        process, and embeds ``print_audio``); each feature picks the audio it reads. project:
        print [dim] -> unit vector [k] for the projected rule; None leaves that rule out.
        synthetic: print [dim] -> how much it sounds like a synthetic voice, for the projected
        rule's gate; None leaves the gate out. raw_dims: the raw rules compare the first raw_dims
        entries of a print (``campplus``: the CAM++ embedding, not the envelope); None: all."""
        self.new_speaker_distance = new_speaker_distance
        self._embed = embed
        self._raw_dims = raw_dims
        self._project = project
        self._synthetic = synthetic
        self._embeddings: list[np.ndarray] = []  # unit vectors [raw_dims], stream order
        self._projected: list[np.ndarray] = []  # project(embedding) [k], stream order (with project)
        self._likeness: list[float] = []  # synthetic(embedding), stream order (with synthetic)
        self._seconds: list[float] = []  # each utterance's duration, seconds
        self._changes: list[bool] = []  # each utterance's voice_change (cut from the one before)
        self._emitted: list[Speaker] = []
        self._names: list[Speaker] = []  # every utterance's name after the latest clustering, stream order
        # the raw rules' split when they were last asked, bool [n]; None: it did not stand
        self._stood: np.ndarray | None = None
        self.decision = Decision(Rule.NO_SPLIT, 0)  # how the latest utterance was named

    def print_of(self, utterance: Utterance, encoder_states: np.ndarray | None) -> np.ndarray:
        return self._embed(utterance)

    def assign(self, utterance: Utterance, encoder_states: np.ndarray | None,
               voice: np.ndarray | None = None) -> Speaker:
        embedding = voice if voice is not None else self.print_of(utterance, encoder_states)
        return self.assign_print(embedding, len(utterance.audio) / SAMPLE_RATE, utterance.voice_change)

    def assign_print(self, embedding: np.ndarray, seconds: float, voice_change: bool = False) -> Speaker:
        """Attribute one utterance by its print [dim] (any length; the raw rules' part is
        normalised), its duration (seconds of audio) and whether it was cut from the one before at
        a voice change."""
        raw = embedding[: self._raw_dims]
        self._embeddings.append(raw / max(float(np.linalg.norm(raw)), 1e-12))
        self._seconds.append(seconds)
        self._changes.append(voice_change)
        if self._project is not None:
            self._projected.append(self._project(embedding))
        if self._synthetic is not None:
            self._likeness.append(self._synthetic(embedding))
        if len(self._embeddings) > self.MAX_HISTORY:
            del self._embeddings[0], self._seconds[0], self._changes[0], self._emitted[0]
            if self._projected:
                del self._projected[0]
            if self._likeness:
                del self._likeness[0]
        tight = self._tight_groups()
        groups = tight if tight is not None else self._groups(np.stack(self._embeddings))  # bool [n], True = B
        self._names = [Speaker.B if b else Speaker.A for b in groups]
        self._emitted.append(self._names[-1])
        return self._names[-1]

    def names(self) -> list[Speaker]:
        """The current name of every utterance in the history (the last MAX_HISTORY), oldest
        first, after the latest clustering: where it differs from the name an utterance was
        given, the evidence since has moved it to the other speaker."""
        return list(self._names)

    def _smaller_seconds(self, side: np.ndarray) -> float:
        """Seconds of audio in the smaller of the two groups of ``side`` (bool [n])."""
        seconds = np.array(self._seconds)
        return max(min(float(seconds[side].sum()), float(seconds[~side].sum())), 1e-3)

    def _tight_groups(self) -> np.ndarray | None:
        """The projected rule: which utterances [n] are B (named), or None when it does not hold."""
        if not self._projected:
            return None
        projected = np.stack(self._projected)  # [n, k]
        side = two_means(projected)
        fewest = min(int(side.sum()), int((~side).sum()))
        if fewest < min(self.TIGHT_MIN_UTTERANCES, self.EARLY_MIN_UTTERANCES):
            return None
        early = fewest < self.TIGHT_MIN_UTTERANCES
        if early and alternation(side) < self.EARLY_ALTERNATION:
            return None
        if self._likeness:
            likeness = np.array(self._likeness)
            if min(float(likeness[side].mean()), float(likeness[~side].mean())) <= self.SYNTHETIC_GATE:
                return None
        centroids = [_direction(projected[~side]), _direction(projected[side])]
        spread = max(float(np.mean(1.0 - projected[~side] @ centroids[0])),
                     float(np.mean(1.0 - projected[side] @ centroids[1])))
        needed = self.PROJECTED_DISTANCE + self.PROJECTED_EVIDENCE / np.sqrt(self._smaller_seconds(side))
        if early:
            needed *= self.EARLY_FACTOR
        if spread >= self.TIGHT_SPREAD or 1.0 - float(centroids[0] @ centroids[1]) <= needed:
            return None
        self.decision = Decision(Rule.EARLY if early else Rule.PROJECTED, len(side))
        return self._named(side)

    def _groups(self, embeddings: np.ndarray) -> np.ndarray:
        """Which utterances [n] are B, after naming the 2-means groups to fit the emitted names;
        notes whether the split stood, for the next utterance's RAW_HOLD, and the decision."""
        n = len(embeddings)
        side = two_means(embeddings)
        if n < 2 or side.all() or not side.any():
            self._stood = None
            self.decision = Decision(Rule.NO_SPLIT, n)
            return np.zeros(n, bool)
        centroids = [_direction(embeddings[~side]), _direction(embeddings[side])]
        smaller = self._smaller_seconds(side)
        needed = self.new_speaker_distance + self.EVIDENCE_DISTANCE / np.sqrt(smaller)
        needed -= self._turn_taking(side)
        if self._stood is not None and smaller >= self.RAW_HOLD_SECONDS:
            needed -= self.RAW_HOLD
        elif self._extends_stood(side):
            needed -= self.EARLY_HOLD
        between = 1.0 - float(centroids[0] @ centroids[1])
        linked = [side[i] != side[i - 1] for i in range(1, n) if self._changes[i]]  # cut pairs split?
        held = len(linked) >= self.LINKS_NEEDED and all(linked) and between > self.LINKED_DISTANCE
        stood = between > needed or held
        self._stood = side.copy() if stood else None
        rule = Rule.RAW if between > needed else Rule.LINKED if held else Rule.NO_SPLIT
        self.decision = Decision(rule, n, between, float(needed))
        return self._named(side) if stood else np.zeros(n, bool)

    def _sounds(self, synthetic: bool) -> bool:
        """Whether the voices of the history sound synthetic (``synthetic`` True: their prints'
        mean synthetic likeness above SYNTHETIC_GATE) or real (False: at most that); neither
        without a ``synthetic`` likeness."""
        if not self._likeness:
            return False
        return (float(np.mean(self._likeness)) > self.SYNTHETIC_GATE) is synthetic

    def _extends_stood(self, side: np.ndarray) -> bool:
        """Whether the early hold applies to the split ``side`` (bool [n]): the raw rules' split
        stood at the utterance before, ``side`` splits the utterances before the newest the same
        way (up to naming), and the voices sound synthetic (a real voice's second utterance sent
        to B must not be held there)."""
        stood = self._stood
        if stood is None or len(stood) != len(side) - 1:
            return False
        same_split = bool((side[:-1] == stood).all() or (side[:-1] != stood).all())
        return same_split and self._sounds(synthetic=True)

    def _turn_taking(self, side: np.ndarray) -> float:
        """The turn-taking allowance (cosine distance) for the split ``side`` (bool [n], stream
        order): TURN_TAKING_BONUS times how far the share of consecutive utterances on opposite
        sides exceeds ALTERNATION_BASE, scaled so that strict alternation earns the whole bonus.
        While the voices sound real, times min(1, (n - 1) / TURN_TAKING_PAIRS): any split of two
        utterances alternates, so one pair is no sign of turn taking, and a real voice's second
        utterance lies 0.27-0.77 from its first (EmoDB dev, 5th-95th percentile), often past the
        bar the whole allowance leaves (about 0.36 for 2 s turns)."""
        excess = max(0.0, alternation(side) - self.ALTERNATION_BASE)
        allowance = self.TURN_TAKING_BONUS * excess / (1.0 - self.ALTERNATION_BASE)
        if self._sounds(synthetic=False):
            allowance *= min(1.0, (len(side) - 1) / self.TURN_TAKING_PAIRS)
        return allowance

    def _named(self, side: np.ndarray) -> np.ndarray:
        """The two groups of ``side`` (bool [n], the last the new utterance) as B = True: the
        naming that agrees with more of the emitted speakers (a tie: the first utterance is A)."""
        n = len(side)
        if side[0]:
            side = ~side  # the first utterance's group is A unless the emitted names say otherwise
        emitted_b = np.array([s is Speaker.B for s in self._emitted] + [False])
        agree = int((side[:-1] == emitted_b[:-1]).sum())
        return ~side if agree < (n - 1) - agree else side


def alternation(side: np.ndarray) -> float:
    """The share of consecutive utterances on opposite sides of a split ``side`` (bool [n], stream
    order, n >= 2): 1 when two groups strictly take turns."""
    return float(np.mean(side[1:] != side[:-1]))


def _direction(embeddings: np.ndarray) -> np.ndarray:
    """The unit mean direction [dim] of unit vectors [n, dim]."""
    mean = embeddings.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def two_means(embeddings: np.ndarray, max_iterations: int = 20) -> np.ndarray:
    """Spherical 2-means of unit vectors [n, dim]; returns bool [n], True = the second group.

    Started twice, from the two mutually farthest points of a farthest-point pass (from the
    point least like the mean, then the point least like it) and from the split of the first
    principal direction; the start with the higher total similarity to its group's centroid
    wins. Deterministic; with n < 2 everything is in the first group.
    """
    n = len(embeddings)
    if n < 2:
        return np.zeros(n, bool)
    similarity_to_mean = embeddings @ _direction(embeddings)
    far = int(np.argmin(similarity_to_mean))
    farthest = int(np.argmin(embeddings @ embeddings[far]))
    centred = embeddings - embeddings.mean(axis=0)
    principal = np.linalg.svd(centred, full_matrices=False)[2][0]  # [dim]
    starts = [embeddings @ embeddings[farthest] > embeddings @ embeddings[far], centred @ principal > 0]
    best, best_score = starts[0], -np.inf
    for side in starts:
        for _ in range(max_iterations):
            if side.all() or not side.any():
                break
            centroids = np.stack([_direction(embeddings[~side]), _direction(embeddings[side])])  # [2, dim]
            new_side = embeddings @ centroids[1] > embeddings @ centroids[0]
            if (new_side == side).all():
                break
            side = new_side
        if side.all() or not side.any():
            continue
        score = float((embeddings[~side] @ _direction(embeddings[~side])).sum() + (embeddings[side] @ _direction(embeddings[side])).sum())
        if score > best_score:
            best, best_score = side, score
    return best


@lru_cache(maxsize=1)
def shared_embedder() -> "SpeakerEmbedder":
    """The CAM++ embedder, loaded once per process (imports torch; about 0.5 s)."""
    from models.frontends.speaker import SpeakerEmbedder

    return SpeakerEmbedder()


@lru_cache(maxsize=1)
def shared_projection() -> "VoiceProjection":
    """The voice projection for campplus's projected rule, loaded once per process."""
    from models.frontends.speaker import VoiceProjection

    return VoiceProjection()


def project_voice(embedding: np.ndarray) -> np.ndarray:
    """A ``campplus`` print [192 + 40] (or a CAM++ embedding [192] alone) in the voice projection's
    space [k], unit length (loads the projection on first use, so that building an attributor
    imports no torch)."""
    return shared_projection().project(embedding)


def synthetic_likeness(embedding: np.ndarray) -> float:
    """How much a ``campplus`` print's CAM++ embedding (its first 192 entries) sounds like an
    espeak-ng voice: its cosine similarity to the nearest voice the projection was fitted on
    (loads the projection on first use)."""
    return shared_projection().synthetic_likeness(embedding)


def make_attributor(config: SpeakerConfig) -> SpeakerAttributor:
    """A fresh attributor for one conversation."""
    if config.mode is SpeakerMode.SINGLE:
        return SingleSpeaker()
    if config.mode is SpeakerMode.CHANNEL:
        return ChannelSpeakers(config.channel_map)
    if config.feature is VoiceFeature.CAMPPLUS:
        return EmbeddingClustering(config.distance, project=project_voice, synthetic=synthetic_likeness,
                                   raw_dims=CAMPPLUS_DIM)
    if config.feature is VoiceFeature.CAMPPLUS_MFCC:
        return EmbeddingClustering(config.distance, embed=partial(utterance_print, VoiceFeature.CAMPPLUS_MFCC))
    return VoiceClustering(config.feature, config.distance)
