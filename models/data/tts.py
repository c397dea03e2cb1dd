"""Synthetic speech for labelled dialogue text: espeak-ng renderings whose voice carries no emotion.

Each rendered utterance keeps its text, speaker, dialogue, turn, split and label; only its audio is
new. espeak-ng speaks every sentence with the same flat prosody whatever its label, so its audio
is *uninformative* about the emotion: training on such pairs (label from the text) teaches the
fusion network to stop trusting audio that sounds like this. Only train and valid splits may be
rendered (:func:`render_dialogues` refuses test samples).

The output is a JSON-lines manifest (``models.data.manifest`` reads it: ``emostream train`` with a
``name = "manifest"`` dataset of ``modality = "both"``) beside one 16 kHz mono 16-bit wav per
utterance. Audio is never committed: render into ``runs/``.

Each utterance is cut the way the runtime segmenter cuts speech: espeak-ng's own leading and
trailing silence trimmed, then ``LEAD_S`` of silence before it (the VAD pre-roll) and ``TAIL_S``
after it (the VAD hangover).
"""

from __future__ import annotations

import json
import random
import subprocess
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE
from models.errors import UserError

from .sample import Sample, Split, dialogues

LEAD_S = 0.09  # seconds of silence before the speech (segmenter preroll_ms)
TAIL_S = 0.42  # seconds of silence after it (segmenter hangover_ms)

# espeak-ng base voices (accents) and voice variants (timbres); any pair is a distinct voice.
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice setting.

    name: espeak-ng ``-v`` value (accent, optionally ``+variant``); pitch: 0..99 (``-p``);
    speed: words per minute (``-s``).
    """

    name: str
    pitch: int
    speed: int

    def jittered(self, rng: random.Random) -> "Voice":
        """The same voice with small per-utterance pitch (±8) and speed (±15 wpm) changes."""
        return Voice(self.name, min(99, max(0, self.pitch + rng.randint(-8, 8))),
                     max(90, self.speed + rng.randint(-15, 15)))


@dataclass(frozen=True)
class Augmentation:
    """Signal changes drawn per utterance.

    noise_p: probability of adding white noise; snr_db: (low, high) signal-to-noise ratio in dB,
    drawn uniformly.
    """

    noise_p: float = 0.3
    snr_db: tuple[float, float] = (10.0, 30.0)


def draw_voice(rng: random.Random, female: bool | None = None) -> Voice:
    """A random voice: accent, timbre (female when ``female``, male when False, either when None),
    pitch 20..80 and 130..200 words per minute."""
    if female is None:
        female = rng.random() < 0.5
    variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
    accent = rng.choice(ACCENTS)
    return Voice(f"{accent}+{variant}" if variant else accent, rng.randint(20, 80), rng.randint(130, 200))


def synthesise(text: str, voice: Voice) -> np.ndarray:
    """Speak ``text`` with espeak-ng; returns float32 [n] mono at 16 kHz, silence trimmed and
    padded as the segmenter would (:data:`LEAD_S` before, :data:`TAIL_S` after)."""
    espeak = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed),
              "--stdout", "--", text]
    sox = ["sox", "-R", "-D", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed",
           "-b", "16", "-c", "1", "-", "silence", "1", "0.01", "0.1%", "reverse", "silence", "1",
           "0.01", "0.1%", "reverse", "pad", str(LEAD_S), str(TAIL_S)]
    try:
        spoken = subprocess.run(espeak, capture_output=True, check=True).stdout
        raw = subprocess.run(sox, input=spoken, capture_output=True, check=True).stdout
    except FileNotFoundError as err:
        raise UserError(f"{err.filename} not found: apt install espeak-ng sox") from None
    except subprocess.CalledProcessError as err:
        message = err.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"{err.cmd[0]} failed on {text[:40]!r}: {message[-1] if message else err.returncode}") from None
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` relative to the mean power of ``audio`` (float32 [n])."""
    power = float(np.mean(audio ** 2)) if len(audio) else 0.0
    noise = rng.standard_normal(len(audio)).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """float32 [n] in [-1, 1] -> 16 kHz mono 16-bit PCM wav."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())


@dataclass(frozen=True)
class Job:
    """One utterance to render: its manifest row (without ``path``), voice and augmentation."""

    row: dict
    voice: Voice
    snr_db: float | None  # None: no noise
    seed: int


def plan_dialogues(samples: Sequence[Sample], corpus: str, rng: random.Random,
                   augmentation: Augmentation = Augmentation()) -> Iterator[Job]:
    """One job per utterance with text. Every dialogue gets its own voice per speaker (drawn
    independently, so same-sex and cross-sex pairs both occur); test samples are refused."""
    for dialogue in dialogues(samples):
        voices: dict[str, Voice] = {}
        for sample in dialogue:
            if sample.split is Split.TEST:
                raise UserError(f"{corpus}: refusing to render test sample {sample.id!r}; render train/valid only")
            if not sample.text or not sample.text.strip():
                continue
            voice = voices.setdefault(sample.speaker, draw_voice(rng))
            noisy = rng.random() < augmentation.noise_p
            yield Job(
                row={
                    "id": f"{corpus}/{sample.id}", "text": sample.text,
                    "label": sample.label.value if sample.label else None,
                    "speaker": sample.speaker, "dialogue": f"{corpus}/{sample.dialogue or sample.id}",
                    "turn": sample.turn, "split": sample.split.value if sample.split else None,
                },
                voice=voice.jittered(rng),
                snr_db=rng.uniform(*augmentation.snr_db) if noisy else None,
                seed=rng.randrange(2 ** 31),
            )


def render(job: Job, out_dir: Path) -> dict:
    """Render one job to ``out_dir``; returns its manifest row with ``path`` (relative) and the
    voice used."""
    audio = synthesise(job.row["text"], job.voice)
    if job.snr_db is not None:
        audio = add_noise(audio, job.snr_db, np.random.default_rng(job.seed))
    name = job.row["id"].replace("/", "__") + ".wav"
    write_wav(out_dir / "wav" / name, audio)
    return {**job.row, "path": f"wav/{name}", "voice": job.voice.name, "pitch": job.voice.pitch,
            "speed": job.voice.speed, "snr_db": None if job.snr_db is None else round(job.snr_db, 1)}


def render_jobs(jobs: Sequence[Job], out_dir: Path, workers: int = 2) -> list[dict]:
    """Render jobs in parallel (espeak-ng and sox run as processes); rows in job order."""
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: render(job, out_dir), jobs))


def write_manifest(rows: Sequence[dict], path: Path) -> None:
    """One JSON object a line (the ``manifest`` dataset's format)."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
