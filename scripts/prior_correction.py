"""Set a checkpoint's prior correction from its predictions on development sets.

    python scripts/prior_correction.py CHECKPOINT --predictions DEV1.jsonl [DEV2.jsonl ...] \
        --tau 0.6 --out NEW.pt [--choose]

The training mix is mostly neutral (DailyDialog 83 %, MELD 47 %), so the network's probabilities
carry that prior and rare classes lose every close call. The correction subtracts
``tau * log(prior)`` from the logits at inference, ``prior`` being the network's mean predicted
distribution over the development sets' utterances (labels not used). ``--choose`` prints, for
several tau, each set's four-class UA and weighted F1 (labels used, development sets only) and the
tau with the best mean of the two; the output is written with ``--tau``.
Prediction files come from ``emostream evaluate ... --predictions FILE.jsonl`` with the
checkpoint *without* a correction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.checkpoint import load_checkpoint
from models.labels import label_set
from models.metrics import score

TAUS = (0.0, 0.25, 0.5, 0.6, 0.75, 1.0)


def read_predictions(path: Path, labels: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Probabilities [N, C] in the checkpoint's label order, and the raw labels."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return np.array([[r["probabilities"][k] for k in labels] for r in rows]), [r["label"] for r in rows]


def core4_scores(probs: np.ndarray, raw: list[str], labels: tuple[str, ...], offset: np.ndarray) -> tuple[float, float]:
    """UA and weighted F1 on the four core classes after subtracting ``offset`` from the log-probabilities."""
    core4 = label_set("core4")
    adjusted = np.log(probs + 1e-9) - offset  # [N, C]
    keep = [i for i, name in enumerate(raw) if core4.index(name) is not None]
    columns = [labels.index(name) for name in core4.labels]
    y = np.array([core4.index(raw[i]) for i in keep])
    pred = adjusted[keep][:, columns].argmax(1)
    s = score(y, pred, core4.labels)
    return s.ua, s.wf1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--predictions", type=Path, nargs="+", required=True)
    parser.add_argument("--tau", type=float, default=0.6)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--choose", action="store_true", help="print the tau table (development sets only)")
    args = parser.parse_args()
    checkpoint, _ = load_checkpoint(args.checkpoint)
    labels = checkpoint.label_set.labels
    sets = {p.stem: read_predictions(p, labels) for p in args.predictions}
    prior = np.concatenate([probs for probs, _ in sets.values()]).mean(0)  # [C]
    print("prior:", ", ".join(f"{k} {v:.3f}" for k, v in zip(labels, prior)))
    if args.choose:
        best = None
        for tau in TAUS:
            figures = {name: core4_scores(probs, raw, labels, tau * np.log(prior)) for name, (probs, raw) in sets.items()}
            mean = float(np.mean([(ua + wf1) / 2 for ua, wf1 in figures.values()]))
            print(f"tau {tau:.2f}: " + "  ".join(f"{n} UA {ua:.3f} WF1 {wf1:.3f}" for n, (ua, wf1) in figures.items())
                  + f"  mean {mean:.3f}")
            best = max(best or (mean, tau), (mean, tau))
        print(f"best tau {best[1]:.2f} (mean of UA and WF1 {best[0]:.3f})")
    if args.out:
        offset = tuple(round(float(v), 6) for v in args.tau * np.log(prior))
        checkpoint.with_network(prior_correction=offset).save(args.out)
        print(f"wrote {args.out} with prior_correction {offset}")


if __name__ == "__main__":
    main()
