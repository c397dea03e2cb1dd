"""Fit the voice projection: shrinkage LDAs of CAM++ embeddings and spectral envelopes over espeak-ng voices.

    python scripts/train_voice_projection.py [--embeddings runs/spk9/emb_train_r9.npz]
                                             [--envelopes runs/spk10/env_train.npz]
                                             [--out models/checkpoints/campplus_voice_lda.safetensors]

Training material (train split only; no voice of a benchmark's test or dev pair):

- voices: every espeak-ng variant (``voices/!v``) except m1-m7, f1-f5 and klatt, which the speaker
  benchmark's test pairs and the end-to-end test and dev pairs use; each variant on one accent
  (en-us, en-gb-x-rp, en-gb-scotland, en-029, en-us-nyc in turn) is one class (87 classes);
- text: IEMOCAP **train** transcripts (2-200 characters), 40 turns per voice in two RENDERS (14 to
  round 8), each at a random pitch (-p 30..70) and rate (-s 140..200 wpm), so what varies within a
  class is what varies from turn to turn within one synthetic voice;
- each turn embedded by CAM++ (``models.frontends.speaker.SpeakerEmbedder``), unit length, and
  its spectral envelope taken (``streamer.speakers.envelope``: mean log-mel of the voiced frames,
  level removed, [40]); the envelope LDA (round 10) reads a render of its own, ENVELOPE_RENDER.

Fit: within-class scatter S_w and between-class scatter S_b of the unit embeddings; S_w shrunk
towards a multiple of the identity (SHRINKAGE, against its 87-class estimate's noise), whitened,
and the top DIMENSIONS directions of the whitened S_b kept: projection [DIMENSIONS, 192], float32,
saved as safetensors with a ``.sha256`` sidecar. The envelopes' LDA is fitted the same way on
the envelopes less their mean over the training turns (``envelope_mean`` [40]), unit length:
``envelope_projection`` [ENVELOPE_DIMENSIONS, 40], weighted ENVELOPE_WEIGHT against the CAM++
half (``VoiceProjection.project``). The settings were chosen on the end-to-end dev voices and
TurEV-DB (docs/benchmarks.md, "Speaker attribution"). Beside them, ``voice_means``
[87, 192]: each training voice's unit mean embedding, against which
``VoiceProjection.synthetic_likeness`` tells whether a print sounds like such a voice (round 7).

``--embeddings`` / ``--envelopes``: keep the rendered turns' embeddings (RENDERS) / envelopes
(ENVELOPE_RENDER) in an .npz file (no pickle) and reuse it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.speaker_attribution import read_wav, trim  # noqa: E402
from models.frontends.identity import sha256_of  # noqa: E402
from models.frontends.speaker import PROJECTION, SpeakerEmbedder  # noqa: E402
from streamer.speakers import envelope  # noqa: E402

VARIANTS = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
HELD_OUT = {f"f{i}" for i in range(1, 6)} | {f"m{i}" for i in range(1, 8)} | {"klatt"}  # test and dev voices
ACCENTS = ["en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc"]
# Renders of every training voice, (random seed, turns per voice): round 4's 14 turns, then (round 9)
# 26 more of the same recipe, so that each voice's within-class scatter rests on 40 turns (a third
# render, to 80 turns, did not help on the dev voices: docs/benchmarks.md, "Speaker attribution")
RENDERS = ((7, 14), (17, 26))
DIMENSIONS = 40  # round 9 (60 to round 8), chosen with SHRINKAGE on the dev voices
SHRINKAGE = 0.3  # weight of the identity in the shrunk within-class scatter (0.1 to round 8)
# The envelope LDA (round 10, chosen on the dev voices): its render (seed, turns per voice) and fit
ENVELOPE_RENDER = (41, 20)
ENVELOPE_DIMENSIONS = 20
ENVELOPE_SHRINKAGE = 0.3
ENVELOPE_WEIGHT = 2.0  # the envelope half's weight on the projected cosine distance (the CAM++ half's: 1)


def training_voices(variants: Path = VARIANTS) -> list[str]:
    """espeak-ng voice names, one per variant not held out, accents in turn."""
    names = sorted(p.name for p in variants.iterdir() if p.name not in HELD_OUT and " " not in p.name)
    return [f"{ACCENTS[i % len(ACCENTS)]}+{name}" for i, name in enumerate(names)]


def render_and_embed(voices: list[str], texts: list[str], seed: int,
                     turns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``turns`` turns per voice, drawn with random ``seed`` -> unit embeddings [n, 192], spectral
    envelopes [n, 40] and voice labels [n]."""
    rng = np.random.default_rng(seed)
    embedder = SpeakerEmbedder()
    embeddings, envelopes, labels = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "turn.wav"
        for voice in voices:
            for _ in range(turns):
                text = texts[rng.integers(len(texts))]
                pitch, rate = int(rng.integers(30, 71)), int(rng.integers(140, 201))
                cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(wav), text]
                subprocess.run(cmd, check=True, capture_output=True)
                audio = trim(read_wav(wav))
                if len(audio) >= 1600:  # 0.1 s
                    embeddings.append(embedder.embed(audio))
                    envelopes.append(envelope(audio))
                    labels.append(voice)
            print(f"{voice}: {len(labels)} turns so far", file=sys.stderr, flush=True)
    return np.stack(embeddings), np.stack(envelopes), np.array(labels)


def rendered(cache: Path | None, key: str, renders: tuple[tuple[int, int], ...],
             texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The training turns' ``key`` ("emb" or "envelope") [n, d] and voice labels [n] of
    ``renders`` ((seed, turns per voice), ...): read from ``cache`` (.npz) when it exists, else
    rendered (and kept there when a path is given)."""
    if cache and cache.exists():
        cached = np.load(cache)
        return cached[key], cached["voice"]
    parts = [render_and_embed(training_voices(), texts, seed, turns) for seed, turns in renders]
    values = np.concatenate([p[0] if key == "emb" else p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts])
    if cache:
        np.savez(cache, **{key: values, "voice": labels})
    return values, labels


def fit_lda(embeddings: np.ndarray, labels: np.ndarray, dimensions: int, shrinkage: float) -> np.ndarray:
    """Shrinkage LDA of embeddings [n, d] (normalised to unit length) -> projection [dimensions, d]."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    classes, index = np.unique(labels, return_inverse=True)
    means = np.stack([x[index == c].mean(axis=0) for c in range(len(classes))])  # [n_classes, d]
    residual = x - means[index]
    within = residual.T @ residual / len(x)  # [d, d]
    between = np.cov(means.T, bias=True)  # [d, d]
    d = len(within)
    shrunk = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
    values, vectors = np.linalg.eigh(shrunk)
    whiten = vectors @ np.diag(values**-0.5) @ vectors.T  # shrunk^(-1/2), symmetric
    _, directions = np.linalg.eigh(whiten @ between @ whiten)  # ascending eigenvalues
    return (whiten @ directions[:, ::-1][:, :dimensions]).T


def voice_means(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each voice's mean of the unit embeddings [n, d], unit length: [n_voices, d], voices sorted."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    means = np.stack([x[labels == voice].mean(axis=0) for voice in np.unique(labels)])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iemocap", type=Path, default=ROOT.parent / "shared/data/text/iemocap/iemocap_text.jsonl")
    parser.add_argument("--embeddings", type=Path, help="cache of the rendered turns' embeddings (.npz)")
    parser.add_argument("--envelopes", type=Path, help="cache of the envelope render's envelopes (.npz)")
    parser.add_argument("--out", type=Path, default=PROJECTION)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with args.iemocap.open() as f:
        rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows if r["split"] == "train" and 2 <= len(r["text"]) <= 200]
    embeddings, labels = rendered(args.embeddings, "emb", RENDERS, texts)
    envelopes, envelope_labels = rendered(args.envelopes, "envelope", (ENVELOPE_RENDER,), texts)
    projection = fit_lda(embeddings, labels, DIMENSIONS, SHRINKAGE)
    envelope_mean = envelopes.mean(axis=0)
    envelope_projection = fit_lda(envelopes - envelope_mean, envelope_labels, ENVELOPE_DIMENSIONS, ENVELOPE_SHRINKAGE)
    metadata = {
        "what": "shrinkage LDA of unit CAM++ embeddings over espeak-ng voices (scripts/train_voice_projection.py)",
        "classes": str(len(set(labels))), "turns": str(len(labels)),
        "dimensions": str(DIMENSIONS), "shrinkage": str(SHRINKAGE),
        "voice_means": "each voice's unit mean embedding [classes, 192] (synthetic likeness, round 7)",
        "envelope_turns": str(len(envelope_labels)), "envelope_dimensions": str(ENVELOPE_DIMENSIONS),
        "envelope_shrinkage": str(ENVELOPE_SHRINKAGE), "envelope_weight": str(ENVELOPE_WEIGHT),
    }
    tensors = {"projection": projection, "voice_means": voice_means(embeddings, labels),
               "envelope_projection": envelope_projection, "envelope_mean": envelope_mean}
    tensors = {name: torch.from_numpy(value.astype(np.float32)).contiguous() for name, value in tensors.items()}
    save_file(tensors, str(args.out), metadata=metadata)
    digest = sha256_of(args.out)
    args.out.with_suffix(args.out.suffix + ".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"{args.out}: {projection.shape}, {len(set(labels))} voices, {len(labels)} turns, sha256 {digest}")


if __name__ == "__main__":
    main()
