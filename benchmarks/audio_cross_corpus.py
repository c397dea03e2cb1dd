"""Audio-only emotion across languages: train on one acted corpus, score another (core4).

The proxy for speech in a language the model never heard (issue 9.5): every clip of corpus A
(all its speakers) trains standardisation + logistic regression, every clip of corpus B is
scored, on neutral/happy/sad/angry (TurEV-DB's calm counted as neutral). Nothing is tuned on B:
a layered encoder's layer is chosen by leave-one-speaker-out (LOSO) UA on A alone. Rows cross
the features with per-speaker online normalisation and with augmented training copies
(speed, pitch, reverberation, noise; :mod:`models.augment`). The LOSO UA of every layer on each
corpus is printed too (the LOSO table beside eGeMAPS).

    python benchmarks/audio_cross_corpus.py --data ../shared/data/audio --json runs/audio/cross.json

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

from models.augment import Augmentation
from models.crossval import (
    LAYERED, choose_layer, cross_corpus, labelled_features, leave_one_speaker_out, pick_layer,
)
from models.labels import LABEL_SETS
from models.metrics import score

CORPORA = ("emodb", "turevdb")
NORMALISATIONS = ("none", "speaker-online")


def load(corpus: str, data: Path, kind: str, copies: int) -> dict:
    """Clean core4 features of a corpus and those of ``copies`` augmented copies."""
    labels = LABEL_SETS["core4"]
    x, y, speakers, _ = labelled_features(corpus, data / corpus, labels, kind)
    augmented = [labelled_features(corpus, data / corpus, labels, kind, augmentation=Augmentation(copy=i))[0]
                 for i in range(1, copies + 1)]
    return {"x": x, "y": y, "speakers": speakers, "augmented": augmented}


def views(kind: str, corpora: dict[str, dict], loso: dict) -> dict[str, dict[str, str | None]]:
    """name -> {training corpus: layer view (None for flat features)} of the rows to score.

    A layered encoder gives its last layer and the layer chosen by LOSO on the training corpus.
    """
    if kind not in LAYERED:
        return {kind: dict.fromkeys(corpora)}
    chosen = {}
    for corpus, c in corpora.items():
        best, uas = choose_layer(c["x"], c["y"], c["speakers"])
        loso[f"{kind}/{corpus}"] = {"uas": uas, "chosen": best}
        logging.info("%s on %s: LOSO UA per layer %s -> %s", kind, corpus,
                     {k: round(100 * v, 1) for k, v in uas.items()}, best)
        chosen[corpus] = best
    return {f"{kind} last": dict.fromkeys(corpora, "last"), f"{kind} chosen on train": chosen}


def flat_loso(kind: str, corpora: dict[str, dict], loso: dict) -> None:
    """LOSO UA of flat features on each corpus (no normalisation and speaker-online)."""
    for corpus, c in corpora.items():
        labels = tuple(str(i) for i in range(4))
        loso[f"{kind}/{corpus}"] = {"uas": {norm: score(
            c["y"], leave_one_speaker_out(c["x"], c["y"], c["speakers"], normalise=norm), labels).ua
            for norm in NORMALISATIONS}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding emodb/ and turevdb/")
    p.add_argument("--features", default="whisper,tiny-layers,base-layers,egemaps")
    p.add_argument("--copies", type=int, default=2, help="augmented copies of each training clip")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    labels = LABEL_SETS["core4"].labels
    rows, loso = [], {}
    for kind in args.features.split(","):
        copies = 0 if kind == "whisper" else args.copies  # the CT2 tiny.en = tiny-layers last, clean
        corpora = {corpus: load(corpus, args.data, kind, copies) for corpus in CORPORA}
        if kind not in LAYERED:
            flat_loso(kind, corpora, loso)
        for name, layer_of in views(kind, corpora, loso).items():
            for train, test in (CORPORA, CORPORA[::-1]):
                def view(x: np.ndarray, corpus: str = train) -> np.ndarray:
                    return x if layer_of[corpus] is None else pick_layer(x, layer_of[corpus])

                a, b = corpora[train], corpora[test]
                for norm in NORMALISATIONS:
                    for aug in sorted({0, copies}):
                        predicted = cross_corpus(
                            (view(a["x"]), a["y"], a["speakers"]), (view(b["x"]), b["y"], b["speakers"]),
                            normalise=norm, augmented=[view(x) for x in a["augmented"][:aug]])
                        s = score(b["y"], predicted, labels)
                        rows.append({"features": name, "layer": layer_of[train], "train": train, "test": test,
                                     "normalise": norm, "augmented_copies": aug, "ua": s.ua, "wa": s.wa,
                                     "recall": {k: v["recall"] for k, v in s.per_class.items()}})
                        print(f"{name:28s} {train}->{test} layer={layer_of[train]} norm={norm:14s} "
                              f"aug={aug} UA {100 * s.ua:5.1f} " + " ".join(
                                  f"{k} {100 * v['recall']:4.0f}" for k, v in s.per_class.items()), flush=True)
    print("load average", os.getloadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cross_corpus": rows, "loso": loso}, indent=1))


if __name__ == "__main__":
    main()
