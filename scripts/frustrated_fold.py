"""Where would IEMOCAP *frustrated* go in the four core classes? (evidence for the emo7 label fold)

    python scripts/frustrated_fold.py [--data ../shared/data/text/iemocap/iemocap_text.jsonl]

Fits a logistic regression on the sentence embeddings (the shipped text encoder) of IEMOCAP's
training turns labelled neutral, happy (+excited), sad or angry, then prints how it classifies the
*frustrated* turns of the train and valid splits (Session 5, the test, is not read). If frustrated
text looked angry, folding it onto angry would add consistent training data; if it mostly looks
neutral, the fold would teach "neutral-sounding text is angry".
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.data import load_dataset
from models.data.sample import Split
from models.features import text_matrix
from models.frontends.text import TextEncoder
from models.labels import LABEL_SETS, Emotion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/text/iemocap/iemocap_text.jsonl"))
    args = parser.parse_args()
    core4 = LABEL_SETS["core4"]
    samples = [s for s in load_dataset("iemocap-text", args.data).samples if s.split is not Split.TEST]
    x = text_matrix(samples, TextEncoder())  # [N, D]
    train = [i for i, s in enumerate(samples) if s.split is Split.TRAIN and core4.index(s.label) is not None]
    model = LogisticRegression(max_iter=2000).fit(x[train], [core4.index(samples[i].label) for i in train])
    print("| split | frustrated turns | " + " | ".join(f"→ {name}" for name in core4.labels) + " |")
    print("|---|---:|" + "---:|" * len(core4.labels))
    for split in (Split.TRAIN, Split.VALID):
        rows = [i for i, s in enumerate(samples) if s.split is split and s.label is Emotion.FRUSTRATED]
        counts = Counter(model.predict(x[rows]).tolist())
        shares = " | ".join(f"{100 * counts[c] / len(rows):.1f}%" for c in range(len(core4.labels)))
        print(f"| {split.value} | {len(rows)} | {shares} |")


if __name__ == "__main__":
    main()
