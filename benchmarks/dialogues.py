"""Two-voice recordings of corpus dialogues (train/dev splits only), with per-turn ground truth.

The corpora are DailyDialog valid, MELD dev and IEMOCAP valid from the data root, and the
written everyday dialogues of this repository (``benchmarks/data/written_dialogues.jsonl``, a
dev set written for the project; ``benchmarks/data/README.md``).

Used by ``benchmarks/end_to_end.py``. A dialogue of a text corpus is spoken turn by turn with
espeak-ng, speaker A in one voice and B in another, and laid out with pauses into a mono mix and
a stereo file (A left, B right). Everything is seeded: the same arguments give the same files,
which are cached under ``runs/e2e/renders/`` (git-ignored); a cached dialogue whose text or
labels no longer match its source is rendered again.

Selection (per set, deterministic):

1. Each dialogue of the split is cut to an excerpt of at most ``max_turns`` consecutive turns,
   the one with the most emotional turns (happy, sad or angry in the core4 fold; earliest wins
   ties), and kept when it has exactly two speakers, at least ``min_turns`` turns and at least
   two emotional turns.
2. The kept excerpts are shuffled with the seed, then drawn round-robin by the rarest emotions
   first (one containing *angry*, one containing *sad*, one containing *happy*, again), so that
   a handful of dialogues still holds every class.

Rendering: per turn, espeak-ng with the speaker's voice, a rate drawn from 140-200 words/min and
a pitch from 30-70 (espeak's 0-99 scale); the synthesis is resampled to 16 kHz, trimmed to its
first and last sample above 0.1 % of full scale (as ``scripts/make_example.sh`` does, so the
ground-truth times are exact speech boundaries) and normalised to -3 dBFS peak. Pauses between
turns are 0.2-1.2 s, and one in six is short (0.05-0.2 s). Voice pairs alternate between
cross-sex and same-sex ones (:data:`VOICE_PAIRS`).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from models.audio import SAMPLE_RATE
from models.data import load_dataset
from models.data.sample import Sample, dialogues
from models.labels import LABEL_SETS

ROOT = Path(__file__).resolve().parents[1]
RENDER_VERSION = 2  # bump when rendering changes, so stale caches are not reused
CORE4 = LABEL_SETS["core4"]
EMOTIONAL = ("angry", "sad", "happy")  # rarest first: the order of the round-robin draw
# (speaker A voice, speaker B voice, kind). espeak-ng 1.51 ignores a +variant on en-gb (en-gb+f2 is
# en-gb byte for byte), and en-us, en-gb, en-us+m3, en-gb-scotland are nearly one voice (CAM++
# cosine distance 0.06-0.18 between their means, within a voice 0.16). Each pair here is two
# voices 0.31-0.63 apart; the f variants are female, the rest male.
VOICE_PAIRS = (
    ("en-us", "en-us+f3", "cross-sex"),
    ("en-us+m1", "en-us+m7", "same-sex (male)"),
    ("en-us+f2", "en-us+f3", "same-sex (female)"),
    ("en-us+klatt", "en-us+f4", "cross-sex"),
    ("en-gb", "en-us+klatt", "same-sex (male)"),
    ("en-us+m1", "en-us+f2", "cross-sex"),
)
RATE_WPM = (140, 200)
PITCH = (30, 70)
PAUSE_S = (0.2, 1.2)
SHORT_PAUSE_S = (0.05, 0.2)
P_SHORT_PAUSE = 1 / 6
LEAD_S, TAIL_S = 0.5, 1.0  # silence before the first and after the last turn
TRIM_FLOOR = 1e-3  # |sample| above this counts as speech when trimming (0.1 % of full scale)
PEAK = 10 ** (-3 / 20)  # -3 dBFS


@dataclass(frozen=True)
class CorpusSet:
    """A benchmark set: a dataset of the registry, its path under the data root, the split."""

    name: str
    dataset: str
    path: str  # relative to the data root, or absolute (a file of this repository)
    split: str | None  # None: the dataset has no splits (a dev set as a whole)


SETS = {
    s.name: s
    for s in (
        CorpusSet("everyday", "dailydialog", "text/dailydialog", "valid"),
        CorpusSet("meld", "meld", "text/meld/MELD_Dyadic", "dev"),
        CorpusSet("iemocap", "iemocap-text", "text/iemocap/iemocap_text.jsonl", "valid"),
        CorpusSet("written", "written", str(ROOT / "benchmarks" / "data" / "written_dialogues.jsonl"), None),
    )
}


@dataclass(frozen=True)
class Turn:
    """Ground truth of one spoken turn. start/end: seconds of speech in the recording.

    text: what was spoken; corpus_text: the corpus's own spelling (the ceiling reads it);
    raw_label: the corpus label; emotion: its canonical name; label: its core4 fold, or None
    for a turn that is spoken but not scored for emotion.
    """

    dialogue: str
    turn: int
    speaker: str  # "A" or "B"
    start: float
    end: float
    text: str
    corpus_text: str
    raw_label: str | None
    emotion: str | None
    label: str | None
    voice: str
    rate_wpm: int
    pitch: int


@dataclass(frozen=True)
class Recording:
    """One rendered dialogue: mono mix and stereo (A left, B right) 16-bit wav at 16 kHz."""

    set: str
    dialogue: str
    mono: Path
    stereo: Path
    voices: tuple[str, str]
    pair_kind: str
    duration: float  # seconds
    turns: tuple[Turn, ...]


def core4(sample: Sample) -> str | None:
    """The core4 class of a sample's label, or None outside the set."""
    index = CORE4.index(sample.label)
    return None if index is None else CORE4.labels[index]


def speakable(text: str) -> str:
    """Corpus text as a reader would say it: typographic quotes plain, tokenised punctuation
    re-attached ("Hello , sir ." -> "Hello, sir."), bracketed noises dropped, one line."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\x92", "'").replace("\x85", "...").replace("\u2026", "...").replace("\u2014", ", ")
    text = re.sub(r"\[[^\]]*\]", " ", text)  # IEMOCAP's [LAUGHTER], [BREATHING]: not words
    text = re.sub(r"\s+([,.!?;:%])", r"\1", text)
    text = re.sub(r"\s*'\s*(s|t|re|ve|ll|d|m)\b", r"'\1", text)  # "it ' s" -> "it's"
    return " ".join(text.split())


def excerpt(turns: list[Sample], max_turns: int) -> list[Sample]:
    """The ``max_turns`` consecutive turns with the most emotional ones (earliest on ties)."""
    if len(turns) <= max_turns:
        return turns
    counts = [sum(core4(s) in EMOTIONAL for s in turns[i : i + max_turns]) for i in range(len(turns) - max_turns + 1)]
    best = counts.index(max(counts))
    return turns[best : best + max_turns]


def select_dialogues(
    corpus: CorpusSet, data_root: Path, n: int, seed: int, min_turns: int = 4, max_turns: int = 12,
) -> list[list[Sample]]:
    """``n`` dialogue excerpts of ``corpus`` (module docstring: how they are picked)."""
    samples = load_dataset(corpus.dataset, data_root / corpus.path, corpus.split, keep_unlabelled=True).samples
    eligible = []
    for dialogue in dialogues(samples):
        part = [s for s in excerpt(dialogue, max_turns) if s.text and speakable(s.text)]
        if (len(part) >= min_turns and len({s.speaker for s in part}) == 2
                and sum(core4(s) in EMOTIONAL for s in part) >= 2):
            eligible.append(part)
    random.Random(f"{seed}:{corpus.name}").shuffle(eligible)
    chosen: list[list[Sample]] = []
    for emotion in _cycle(EMOTIONAL, n):
        pick = next((d for d in eligible if d not in chosen and any(core4(s) == emotion for s in d)), None)
        pick = pick or next((d for d in eligible if d not in chosen), None)
        if pick is None:
            break
        chosen.append(pick)
    return chosen


def _cycle(items: tuple[str, ...], n: int) -> list[str]:
    return [items[i % len(items)] for i in range(n)]


def synthesise(text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng speech for ``text``: float32 [n_samples] at 16 kHz, trimmed, -3 dBFS peak."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "turn.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-w", str(path)],
                       input=text.encode(), capture_output=True, check=True)
        audio, rate = read_wav(path)
    audio = soxr.resample(audio[:, 0], rate, SAMPLE_RATE).astype(np.float32)
    loud = np.nonzero(np.abs(audio) > TRIM_FLOOR)[0]
    audio = audio[loud[0] : loud[-1] + 1] if len(loud) else audio
    return (audio * (PEAK / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM wav file: float32 [n_samples, channels] in [-1, 1], and its rate (Hz)."""
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())
        return pcm.astype(np.float32) / 32768.0, w.getframerate()


def write_wav(path: Path, samples: np.ndarray) -> None:
    """float32 [n_samples, channels] in [-1, 1] -> 16-bit PCM wav at 16 kHz."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def render(corpus: str, dialogue: list[Sample], index: int, seed: int, out_dir: Path) -> Recording:
    """Speak ``dialogue`` (the ``index``-th of its set) into ``out_dir``, or load the cached render."""
    name = _file_stem(dialogue[0].dialogue or dialogue[0].id)
    meta = out_dir / f"{name}.json"
    if meta.is_file():
        cached = _load_recording(meta)
        if [(t.corpus_text, t.raw_label) for t in cached.turns] == [(s.text or "", s.raw_label) for s in dialogue]:
            return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}:{corpus}:{name}")
    voice_a, voice_b, kind = VOICE_PAIRS[index % len(VOICE_PAIRS)]
    first = dialogue[0].speaker
    channels: list[list[np.ndarray]] = [[np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)], []]
    position = len(channels[0][0])
    turns = []
    for k, sample in enumerate(dialogue):
        speaker = "A" if sample.speaker == first else "B"
        voice = voice_a if speaker == "A" else voice_b
        rate, pitch = rng.randint(*RATE_WPM), rng.randint(*PITCH)
        text = speakable(sample.text or "")
        speech = synthesise(text, voice, rate, pitch)
        pause = rng.uniform(*SHORT_PAUSE_S) if rng.random() < P_SHORT_PAUSE else rng.uniform(*PAUSE_S)
        gap = np.zeros(int((pause if k < len(dialogue) - 1 else TAIL_S) * SAMPLE_RATE), np.float32)
        turns.append(Turn(
            dialogue=name, turn=k, speaker=speaker,
            start=round(position / SAMPLE_RATE, 4), end=round((position + len(speech)) / SAMPLE_RATE, 4),
            text=text, corpus_text=sample.text or "", raw_label=sample.raw_label,
            emotion=sample.label.value if sample.label else None, label=core4(sample),
            voice=voice, rate_wpm=rate, pitch=pitch,
        ))
        channels[0].append(speech)
        channels[0].append(gap)
        position += len(speech) + len(gap)
    mono = np.concatenate(channels[0])
    # Stereo: the same timeline, each speaker's turns on their own channel, silence opposite.
    stereo = np.zeros((len(mono), 2), np.float32)
    for t in turns:
        a, b = round(t.start * SAMPLE_RATE), round(t.end * SAMPLE_RATE)
        stereo[a:b, 0 if t.speaker == "A" else 1] = mono[a:b]
    write_wav(out_dir / f"{name}.wav", mono[:, None])
    write_wav(out_dir / f"{name}_stereo.wav", stereo)
    recording = Recording(corpus, name, out_dir / f"{name}.wav", out_dir / f"{name}_stereo.wav",
                          (voice_a, voice_b), kind, len(mono) / SAMPLE_RATE, tuple(turns))
    meta.write_text(json.dumps({**asdict(recording), "mono": recording.mono.name, "stereo": recording.stereo.name}, indent=1))
    return recording


def _file_stem(dialogue: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", dialogue)


def _load_recording(meta: Path) -> Recording:
    raw = json.loads(meta.read_text())
    return Recording(
        set=raw["set"], dialogue=raw["dialogue"], mono=meta.parent / raw["mono"], stereo=meta.parent / raw["stereo"],
        voices=tuple(raw["voices"]), pair_kind=raw["pair_kind"], duration=raw["duration"],
        turns=tuple(Turn(**t) for t in raw["turns"]),
    )


def render_set(name: str, data_root: Path, n: int, seed: int, cache: Path) -> list[Recording]:
    """Select and render ``n`` dialogues of set ``name`` (a key of :data:`SETS`), cached."""
    corpus = SETS[name]
    out_dir = cache / f"v{RENDER_VERSION}-seed{seed}" / name
    return [render(name, d, i, seed, out_dir) for i, d in enumerate(select_dialogues(corpus, data_root, n, seed))]
