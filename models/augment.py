"""Training-side audio augmentation (speed, pitch, reverberation, noise) and its feature cache.

An augmented copy of a clip is a fixed function of the clip's key, the copy number and a seed,
so its features can be cached like the clean ones and every run sees the same copies. Only
training clips are augmented; test clips are always clean.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from models.audio import SAMPLE_RATE
from models.errors import UserError

from .data.sample import Sample
from .features import _audio_keys, cached_matrix, load_sample_audio


@dataclass(frozen=True)
class Augmentation:
    """One random chain per (clip, copy): speed ×U(1 - speed, 1 + speed) (tempo and pitch
    together, by resampling), a pitch shift of U(-pitch, pitch) semitones at constant tempo
    (sox), a synthetic room (exponentially decaying noise impulse response, RT60 U(0.2, 0.7) s)
    with probability ``reverb``, and white noise at a signal-to-noise ratio of U(snr_db) dB."""

    copy: int = 1
    seed: int = 0
    speed: float = 0.1
    pitch: float = 2.0
    reverb: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)

    def key(self) -> str:
        """A string naming this augmentation, for cache keys."""
        return (f"aug{self.copy}-s{self.seed}-sp{self.speed:g}-pi{self.pitch:g}-rv{self.reverb:g}"
                f"-snr{self.snr_db[0]:g}to{self.snr_db[1]:g}")

    def __call__(self, audio: np.ndarray, clip_key: str) -> np.ndarray:
        """audio float32 [n] at 16 kHz -> augmented float32 [m] (m ≈ n / speed factor)."""
        digest = hashlib.sha256(f"{clip_key}|{self.key()}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        out = change_speed(audio, rng.uniform(1 - self.speed, 1 + self.speed))
        if self.pitch:
            out = shift_pitch(out, rng.uniform(-self.pitch, self.pitch))
        if rng.random() < self.reverb:
            out = add_reverb(out, rng.uniform(0.2, 0.7), rng)
        return add_noise(out, rng.uniform(*self.snr_db), rng)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch rises with it), by linear resampling: [n] -> [n / factor]."""
    n_out = max(1, int(round(len(audio) / factor)))
    return np.interp(np.arange(n_out) * factor, np.arange(len(audio)), audio).astype(np.float32)


def shift_pitch(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` at constant duration with sox's ``pitch`` effect: [n] -> [≈n]."""
    sox = shutil.which("sox")
    if sox is None:
        raise UserError("pitch augmentation needs sox (apt-get install sox), or set pitch=0")
    raw = ["-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1"]
    done = subprocess.run([sox, *raw, "-", *raw, "-", "pitch", f"{100 * semitones:.1f}"],
                          input=audio.astype("<f4").tobytes(), capture_output=True, check=True)
    return np.frombuffer(done.stdout, "<f4").astype(np.float32)


def add_reverb(audio: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (a direct path plus Gaussian noise decaying by
    60 dB in ``rt60_s``), keeping the length and the peak level: [n] -> [n]."""
    t = np.arange(int(rt60_s * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s) * 0.1
    response[0] = 1.0
    wet = np.convolve(audio, response)[: len(audio)]
    return (wet * (np.abs(audio).max() / (np.abs(wet).max() + 1e-9))).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` below the clip's mean power: [n] -> [n]."""
    power = float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    noise = rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def clip_matrix(kind: str, identity: dict[str, str], samples: Sequence[Sample],
                extract: Callable[[np.ndarray], np.ndarray],
                augmentation: Augmentation | None = None) -> np.ndarray:
    """``extract`` (audio float32 [n] -> vector [D] or array) of every sample's audio, clean or
    through ``augmentation``, cached on disk: float32 [N, ...]."""
    keys = _audio_keys(samples)  # as features.audio_matrix: clean matrices share its cache
    tag = kind if augmentation is None else f"{kind}-{augmentation.key()}"

    def compute(_keys: Sequence[str]) -> np.ndarray:
        rows = []
        for sample, key in tqdm(list(zip(samples, keys)), desc=tag, unit="utt", disable=None):
            audio = load_sample_audio(sample)
            rows.append(extract(audio if augmentation is None else augmentation(audio, key)))
        return np.stack(rows)

    return cached_matrix(tag, identity, keys, compute)
