"""Per-utterance feature vectors for training and evaluation, cached on disk.

A cache file holds one matrix for one (dataset, frontend) pair and is named by the frontend's
weights digest and the sample ids, so changing either recomputes it. Files are ``.npz`` read with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from models.audio import SAMPLE_RATE

from .data.sample import Sample, dialogues
from .frontends.packaged import cache_root
from .frontends.text import InContext, TextEncoder

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$EMOSTREAM_CACHE`` or ``~/.cache/emostream/features``."""
    return cache_root() / "features"


def cached_matrix(
    kind: str,
    identity: dict[str, str],
    keys: Sequence[str],
    compute: Callable[[Sequence[str]], np.ndarray],
    cache_dir: Path | None = None,
) -> np.ndarray:
    """Return ``compute(keys)`` (float32 [len(keys), D]), from the cache when it holds it: the
    file of exactly these keys, or else the rows of other files of the same kind and frontend
    that name their keys (a subset of a corpus already computed whole is not computed again)."""
    cache_dir = cache_dir or default_cache_dir()
    tag = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    prefix = f"{kind}-{identity['sha256'][:12]}-"
    path = cache_dir / f"{prefix}{tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return data["x"]
    x = _rows_from_cache(cache_dir, prefix, keys)
    if x is None:
        x = np.asarray(compute(keys), dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, keys=np.array(keys, dtype=str))
    tmp.replace(path)
    return x


def _rows_from_cache(cache_dir: Path, prefix: str, keys: Sequence[str]) -> np.ndarray | None:
    """float32 [len(keys), D] gathered from the cache files ``prefix*.npz`` that store their keys,
    or None when they do not hold every key."""
    rows: dict[str, np.ndarray] = {}
    wanted = set(keys)
    for path in sorted(cache_dir.glob(f"{prefix}*.npz")) if cache_dir.is_dir() else ():
        if ".tmp" in path.name:
            continue
        with np.load(path, allow_pickle=False) as data:
            if "keys" not in data.files:
                continue
            for key, row in zip(data["keys"].tolist(), data["x"]):
                if key in wanted:
                    rows[key] = row
        if len(rows) == len(wanted):
            return np.stack([rows[k] for k in keys]).astype(np.float32)
    return None


def load_sample_audio(sample: Sample) -> np.ndarray:
    """Decode a sample's audio (or its [start, end] stretch) to float32 mono 16 kHz [n]."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(sample.audio_path), sampling_rate=SAMPLE_RATE)
    if sample.start is not None and sample.end is not None:
        audio = audio[int(sample.start * SAMPLE_RATE) : int(sample.end * SAMPLE_RATE)]
    return audio


def in_context(samples: Sequence[Sample], turns: int) -> list[InContext]:
    """Each sample (in the given order) with up to ``turns`` previous non-empty turns of its
    dialogue among ``samples``, oldest first, marked by whether the sample's speaker said them."""
    read: dict[str, InContext] = {}
    for group in dialogues(samples):
        said = [s for s in group if (s.text or "").strip()]
        for i, s in enumerate(said):
            read[s.id] = InContext.after(s.text, s.speaker, [(p.speaker, p.text) for p in said[max(0, i - turns) : i]],
                                         turns)
    return [read.get(s.id, InContext(s.text or "")) for s in samples]


def _input_key(item: str | InContext) -> str:
    """SHA-1 of a text, or of an utterance with its past turns (never equal to a bare text's)."""
    raw = item if isinstance(item, str) else "in context\n" + json.dumps([item.text, item.past])
    return hashlib.sha1(raw.encode()).hexdigest()


def _input_chars(item: str | InContext) -> int:
    """Characters an input holds (its past turns included): the key that batches similar lengths."""
    return len(item) if isinstance(item, str) else item.chars


def text_inputs(samples: Sequence[Sample], turns: int) -> list[str] | list[InContext]:
    """What a text encoder reads of each sample: its text (empty for missing), or with ``turns``
    > 0 the text with its past turns among ``samples`` (:func:`in_context`)."""
    return in_context(samples, turns) if turns else [s.text or "" for s in samples]


def text_matrix(samples: Sequence[Sample], encoder: TextEncoder, cache_dir: Path | None = None) -> np.ndarray:
    """Sentence embeddings of the samples' texts: float32 [N, D] (empty text for missing); with
    an encoder tuned on utterances in context (``encoder.context_turns`` > 0), of each text read
    with its past turns among ``samples`` (:func:`text_inputs`, :func:`embed_inputs`)."""
    return embed_inputs(text_inputs(samples, encoder.context_turns), encoder, cache_dir)


def embed_inputs(inputs: Sequence[str] | Sequence[InContext], encoder: TextEncoder,
                 cache_dir: Path | None = None) -> np.ndarray:
    """Embeddings of :func:`text_inputs`' inputs: float32 [N, D].

    One store per encoder (``text-<digest>-store.npz``: SHA-1 of each input -> its row) grows
    with every new input, so the train, valid and test subsets of a corpus, and corpora that
    share sentences, embed each sentence once. A store written meanwhile by another process is
    merged, not overwritten, as far as both are read before the write.
    """
    keys = [_input_key(x) for x in inputs]
    cache_dir = cache_dir or default_cache_dir()
    path = cache_dir / f"text-{encoder.identity()['sha256'][:12]}-store.npz"
    store = _read_store(path)
    # Sorted by length, a batch pads little: about twice as fast as in corpus order.
    missing = sorted({k: x for k, x in zip(keys, inputs) if k not in store}.items(), key=lambda kx: _input_chars(kx[1]))
    if missing:
        log.info("embedding %d texts", len(missing))
        todo = [x for _, x in missing]
        new = np.asarray(encoder.embed_in_context(todo, encoder.context_tokens) if encoder.context_turns
                         else encoder.embed(todo), dtype=np.float32)
        store = {**_read_store(path), **store, **{k: v for (k, _), v in zip(missing, new)}}
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(store), dtype="<U40"), x=np.stack(list(store.values())))
        tmp.replace(path)
    if not inputs:
        return np.zeros((0, encoder.dim), np.float32)
    return np.stack([store[k] for k in keys])


def _read_store(path: Path) -> dict[str, np.ndarray]:
    """SHA-1 -> embedding [D] from a text store; empty when there is none yet."""
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["keys"].tolist(), data["x"]))


def _audio_keys(samples: Sequence[Sample]) -> list[str]:
    return [f"{s.audio_path}|{s.start}|{s.end}" for s in samples]


def audio_matrix(samples: Sequence[Sample], encoder, cache_dir: Path | None = None, augmentation=None) -> np.ndarray:
    """Mean+std vectors of the samples' audio from a Whisper encoder (last layer) or a
    :class:`~models.frontends.whisper_layers.LayerStack` (every layer): float32 [N, 2 * D].
    augmentation: a :class:`models.augment.Augmentation` each clip goes through first (training
    copies; its key joins the cache's name), or None for the clean clips."""
    from .frontends.whisper import pool_mean_std

    keys = _audio_keys(samples)

    def heard(sample: Sample, key: str) -> np.ndarray:
        audio = load_sample_audio(sample)
        return audio if augmentation is None else augmentation(audio, key)

    def compute(_keys: Sequence[str]) -> np.ndarray:
        return np.stack([
            pool_mean_std(encoder.encode(heard(s, k)).states)
            for s, k in tqdm(list(zip(samples, keys)), desc="whisper features", unit="utt", disable=None)
        ])

    identity = encoder.identity()
    kind = f"whisper-{identity['window']}" + (f"-layers-{identity['layers']}" if "layers" in identity else "")
    kind += f"-{augmentation.key()}" if augmentation is not None else ""
    return cached_matrix(kind, identity, keys, compute, cache_dir)

