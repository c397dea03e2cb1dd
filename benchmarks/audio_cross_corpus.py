"""Audio-only emotion across languages: train on one acted corpus, score another (core4).

The proxy for speech in a language the model never heard (issue 9.5): every clip of corpus A
(all its speakers) trains standardisation + logistic regression, every clip of corpus B is
scored, on neutral/happy/sad/angry (TurEV-DB's calm counted as neutral). Nothing is tuned on B:
a layered encoder gives its last layer, all its layers side by side, and the layer chosen by
leave-one-speaker-out (LOSO) UA on A alone. Rows cross the features with per-speaker online
normalisation and with augmented training copies (speed, pitch, reverberation, noise;
:mod:`models.augment`). LOSO figures on each corpus are printed too (the table beside eGeMAPS).

    python benchmarks/audio_cross_corpus.py --data ../shared/data/audio --copies 1 --json runs/audio/cross.json
    python benchmarks/audio_cross_corpus.py --data ../shared/data/audio --cost   # frontend load and ms

Features come from the on-disk cache (models/features.py); a cold cache computes them, which
takes long on a CPU: run it under ``nice``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from models.augment import Augmentation
from models.crossval import (
    LAYERED, choose_layer, cross_corpus, feature_matrix, leave_one_speaker_out, pick_layer,
)
from models.data import load_dataset
from models.labels import LABEL_SETS
from models.metrics import score

CORPORA = ("emodb", "turevdb")
NORMALISATIONS = ("none", "speaker-online")


def clips(corpus: str, data: Path, every: int = 1) -> tuple[list, np.ndarray]:
    """Every ``every``-th clip of a corpus (loader order: by class, then speaker) and a mask [N]
    of those that core4 can represent."""
    loaded = [s for s in load_dataset(corpus, data / corpus).samples if s.audio_path is not None][::every]
    return loaded, np.array([LABEL_SETS["core4"].index(s.label) is not None for s in loaded])


def load(corpus: str, data: Path, kind: str, copies: int, every: int) -> dict:
    """Core4 features of a corpus, clean (computed for every clip, so the cache serves every
    label set) and of ``copies`` augmented copies (core4 clips only), with y [N] and speakers [N]."""
    samples, keep = clips(corpus, data, every)
    core4 = [s for s, k in zip(samples, keep) if k]
    augmented = [feature_matrix(kind, core4, augmentation=Augmentation(copy=i)) for i in range(1, copies + 1)]
    return {"x": feature_matrix(kind, samples)[keep], "augmented": augmented,
            "y": np.array([LABEL_SETS["core4"].index(s.label) for s in core4]),
            "speakers": np.array([s.speaker for s in core4])}


def view(x: np.ndarray, layer: str | None) -> np.ndarray:
    """Flat features as they are; layered ones [N, L + 1, 2d] through :func:`pick_layer`."""
    return x if layer is None else pick_layer(x, layer)


def choose_layers(kind: str, corpora: dict[str, dict], loso: dict) -> dict[str, str]:
    """corpus -> the layer view with the best LOSO UA on that corpus (to be used when it is the
    training corpus); every view's LOSO UA is recorded in ``loso``."""
    chosen = {}
    for corpus, c in corpora.items():
        chosen[corpus], uas = choose_layer(c["x"], c["y"], c["speakers"])
        loso[f"{kind} every layer/{corpus}"] = uas
        logging.info("%s on %s: LOSO UA per layer %s -> %s", kind, corpus,
                     {k: round(100 * v, 1) for k, v in uas.items()}, chosen[corpus])
    return chosen


def loso_figures(name: str, corpora: dict[str, dict], layer_of: dict[str, str | None], loso: dict) -> None:
    """LOSO UA on each corpus, without and with speaker-online normalisation, and (online) with
    the other corpus, other language, added to every fold's training data."""
    labels = tuple(str(i) for i in range(len(LABEL_SETS["core4"].labels)))
    for corpus, c in corpora.items():
        layer = layer_of[corpus]
        x = view(c["x"], layer)
        other = next(o for o in corpora.values() if o is not c)
        figures = {norm: leave_one_speaker_out(x, c["y"], c["speakers"], normalise=norm) for norm in NORMALISATIONS}
        figures["speaker-online + other corpus"] = leave_one_speaker_out(
            x, c["y"], c["speakers"], normalise="speaker-online",
            extra=(view(other["x"], layer), other["y"], other["speakers"]))
        loso[f"{name}/{corpus}"] = {"layer": layer, **{k: score(c["y"], p, labels).ua for k, p in figures.items()}}
        print(f"LOSO {name:40s} {corpus:8s} layer={layer} "
              + " | ".join(f"{k} {100 * v:.1f}" for k, v in loso[f"{name}/{corpus}"].items() if k != "layer"),
              flush=True)


def every_layer(kind: str, corpora: dict[str, dict], out: dict) -> None:
    """Cross-corpus UA of every layer view, speaker-online, clean training (exploration: a
    layer picked from this table has been chosen on the test language)."""
    for train, test in (CORPORA, CORPORA[::-1]):
        a, b = corpora[train], corpora[test]
        uas = {}
        for layer in [str(i) for i in range(a["x"].shape[1])] + ["mean", "all"]:
            predicted = cross_corpus((pick_layer(a["x"], layer), a["y"], a["speakers"]),
                                     (pick_layer(b["x"], layer), b["y"], b["speakers"]), normalise="speaker-online")
            uas[layer] = score(b["y"], predicted, LABEL_SETS["core4"].labels).ua
        out[f"{kind} every layer/{train}->{test}"] = uas
        print(f"{kind} {train}->{test} speaker-online UA per layer: "
              + " ".join(f"{k} {100 * v:.1f}" for k, v in uas.items()), flush=True)


def runtime_cost(data: Path, n_clips: int = 20) -> list[dict]:
    """Load time (s) and median ms per utterance of each frontend candidate, on ``n_clips``
    EmoDB clips (2.0 s each): the shipped CTranslate2 tiny.en pass (2 threads, 2 s tail, shared
    with the ASR), a CTranslate2 base int8 pass without tail (what base's last layer would add),
    and the PyTorch passes that expose every layer (1 thread: on a busy 2-core machine two
    PyTorch threads measured 9x slower, 1301 vs 146 ms, spinning on each other)."""
    import time
    from functools import partial

    import torch

    from models.features import load_sample_audio
    from models.frontends.whisper import WhisperEncoder
    from models.frontends.whisper_layers import WhisperLayers, base_model_dir

    torch.set_num_threads(1)
    samples = [s for s in load_dataset("emodb", data / "emodb").samples][:n_clips]
    clips = [load_sample_audio(s) for s in samples]
    candidates = {
        "ct2 tiny.en int8, 2 s tail, 2 threads (shipped)": lambda: WhisperEncoder(None, compute_type="int8", cpu_threads=2).encode,
        "ct2 base int8, no tail, 2 threads": lambda: WhisperEncoder(str(base_model_dir()), compute_type="int8",
                                                         cpu_threads=2, tail_pad_s=0.0).encode,
        "torch tiny.en all layers, 2 s tail, 1 thread": lambda: WhisperLayers(None).pooled,
        "torch base all layers, no tail, 1 thread": lambda: WhisperLayers("base", 0.0).pooled,
        "torch base to layer 3, no tail, 1 thread": lambda: partial(WhisperLayers("base", 0.0).pooled, up_to=3),
    }
    rows = []
    for name, make in candidates.items():
        start = time.perf_counter()
        run = make()
        loaded = time.perf_counter() - start
        run(clips[0])  # warm-up
        times = []
        for clip in clips:
            start = time.perf_counter()
            run(clip)
            times.append(1000 * (time.perf_counter() - start))
        rows.append({"frontend": name, "load_s": loaded, "median_ms": float(np.median(times)),
                     "load_average": os.getloadavg()[0]})
        print(f"{name:40s} load {loaded:5.2f} s, {np.median(times):6.0f} ms per 2 s utterance "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding emodb/ and turevdb/")
    p.add_argument("--features", default="whisper,base-layers,egemaps",
                   help="comma-separated: whisper (shipped CT2 tiny.en), tiny-layers, base-layers, egemaps")
    p.add_argument("--copies", type=int, default=1, help="augmented copies of each training clip")
    p.add_argument("--turevdb-every", type=int, default=3,
                   help="keep every N-th TurEV-DB clip (default 3: 578 of 1735, every speaker and class; "
                        "the CPU budget of the study)")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--cost", action="store_true", help="measure the frontends' load and per-utterance time instead")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cost:
        rows = runtime_cost(args.data)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    threadpool_limits(1)  # small logistic regressions: BLAS threads only spin on a busy machine
    labels = LABEL_SETS["core4"].labels
    rows, loso = [], {}
    for kind in args.features.split(","):
        every = {"emodb": 1, "turevdb": args.turevdb_every}
        corpora = {corpus: load(corpus, args.data, kind, args.copies, every[corpus]) for corpus in CORPORA}
        if kind in LAYERED:
            chosen = choose_layers(kind, corpora, loso)
            last = dict.fromkeys(CORPORA, "last")
            loso_figures(f"{kind} last", corpora, last, loso)
            # honest LOSO for a chosen layer: chosen on the other corpus, never on the scored one
            loso_figures(f"{kind} chosen on the other corpus", corpora, dict(zip(CORPORA, [chosen[c] for c in CORPORA[::-1]])), loso)
            named = {f"{kind} last": last, f"{kind} all layers": dict.fromkeys(CORPORA, "all"),
                     f"{kind} chosen on train": chosen}
            every_layer(kind, corpora, loso)
        else:
            loso_figures(kind, corpora, dict.fromkeys(CORPORA), loso)
            named = {kind: dict.fromkeys(CORPORA)}
        for name, layer_of in named.items():
            for train, test in (CORPORA, CORPORA[::-1]):
                a, b, layer = corpora[train], corpora[test], layer_of[train]
                for norm in NORMALISATIONS:
                    for aug in sorted({0, args.copies}):
                        predicted = cross_corpus(
                            (view(a["x"], layer), a["y"], a["speakers"]), (view(b["x"], layer), b["y"], b["speakers"]),
                            normalise=norm, augmented=[view(x, layer) for x in a["augmented"][:aug]])
                        s = score(b["y"], predicted, labels)
                        rows.append({"features": name, "layer": layer, "train": train, "test": test,
                                     "normalise": norm, "augmented_copies": aug, "ua": s.ua, "wa": s.wa,
                                     "recall": {k: v["recall"] for k, v in s.per_class.items()}})
                        print(f"{name:28s} {train}->{test} layer={layer} norm={norm:14s} aug={aug} "
                              f"UA {100 * s.ua:5.1f} " + " ".join(
                                  f"{k} {100 * v['recall']:4.0f}" for k, v in s.per_class.items()), flush=True)
    print("load average", os.getloadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cross_corpus": rows, "loso": loso}, indent=1))


if __name__ == "__main__":
    main()
