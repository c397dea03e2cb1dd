"""Per-utterance feature vectors for training and evaluation, cached on disk.

A cache file holds one matrix for one (dataset, frontend) pair and is named by the frontend's
weights digest and the sample ids, so changing either recomputes it. Files are ``.npz`` read with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from models.audio import SAMPLE_RATE

from .data.sample import Sample

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$EMOSTREAM_CACHE`` or ``~/.cache/emostream/features``."""
    return Path(os.environ.get("EMOSTREAM_CACHE", Path.home() / ".cache" / "emostream")) / "features"


def cached_matrix(
    kind: str,
    identity: dict[str, str],
    keys: Sequence[str],
    compute: Callable[[Sequence[str]], np.ndarray],
    cache_dir: Path | None = None,
) -> np.ndarray:
    """Return ``compute(keys)`` (float32 [len(keys), D]), from the cache when it holds it."""
    cache_dir = cache_dir or default_cache_dir()
    tag = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    path = cache_dir / f"{kind}-{identity['sha256'][:12]}-{tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return data["x"]
    x = np.asarray(compute(keys), dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, x=x)
    tmp.replace(path)
    return x


def load_sample_audio(sample: Sample) -> np.ndarray:
    """Decode a sample's audio (or its [start, end] stretch) to float32 mono 16 kHz [n]."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(sample.audio_path), sampling_rate=SAMPLE_RATE)
    if sample.start is not None and sample.end is not None:
        audio = audio[int(sample.start * SAMPLE_RATE) : int(sample.end * SAMPLE_RATE)]
    return audio


def text_matrix(samples: Sequence[Sample], encoder, cache_dir: Path | None = None) -> np.ndarray:
    """MiniLM embeddings of the samples' texts: float32 [N, 384] (empty text for missing)."""
    texts = [s.text or "" for s in samples]
    unique = sorted(set(texts))

    def compute(keys: Sequence[str]) -> np.ndarray:
        log.info("embedding %d texts", len(keys))
        return encoder.embed(list(keys))

    table = cached_matrix("text", encoder.identity(), unique, compute, cache_dir)
    row = {t: i for i, t in enumerate(unique)}
    return table[[row[t] for t in texts]] if texts else table[:0]


def _audio_keys(samples: Sequence[Sample]) -> list[str]:
    return [f"{s.audio_path}|{s.start}|{s.end}" for s in samples]


def audio_matrix(samples: Sequence[Sample], encoder, cache_dir: Path | None = None) -> np.ndarray:
    """Whisper-encoder mean+std vectors of the samples' audio: float32 [N, 2 * d_model]."""
    from .frontends.whisper import pool_mean_std

    def compute(_keys: Sequence[str]) -> np.ndarray:
        return np.stack([
            pool_mean_std(encoder.encode(load_sample_audio(s)).states)
            for s in tqdm(samples, desc="whisper features", unit="utt", disable=None)
        ])

    kind = f"whisper-{encoder.identity()['window']}"
    return cached_matrix(kind, encoder.identity(), _audio_keys(samples), compute, cache_dir)


def egemaps_matrix(samples: Sequence[Sample], cache_dir: Path | None = None) -> np.ndarray:
    """eGeMAPS v02 functionals (openSMILE) of the samples' audio: float32 [N, 88]."""
    from .frontends.egemaps import EgemapsExtractor

    extractor = EgemapsExtractor()

    def compute(_keys: Sequence[str]) -> np.ndarray:
        return np.stack([
            extractor(load_sample_audio(s)) for s in tqdm(samples, desc="eGeMAPS", unit="utt", disable=None)
        ])

    return cached_matrix("egemaps", extractor.identity(), _audio_keys(samples), compute, cache_dir)
