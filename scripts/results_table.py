"""Print the model card's fusion tables from the JSON results of scripts/experiments.sh.

    python scripts/results_table.py [runs]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = {  # run name in runs/ -> how it was trained
    "default": "**shipped**: context 16, λ = 0, pseudo-pairs",
    "default-nocontext": "no context, λ = 0, pseudo-pairs",
    "align": "context 16, λ = 0.1 (alignment + matching), pseudo-pairs",
    "align-nocontext": "no context, λ = 0.1, pseudo-pairs",
    "align-nopairs": "context 16, λ = 0.1, no pseudo-pairs",
}
EVALS = {
    "iemocap": "IEMOCAP Session 5, text + context",
    "meld-dev": "MELD dev, text + context",
    "turevdb-test": "TurEV-DB speaker 1358, audio",
    "emodb-test": "EmoDB speakers 15 + 16, audio",
    "pairs-turevdb.text": "pairs TurEV-DB 1358 × IEMOCAP S5: text only",
    "pairs-turevdb.both": "pairs TurEV-DB 1358 × IEMOCAP S5: audio + text",
    "pairs-emodb.text": "pairs EmoDB 15/16 × IEMOCAP S5: text only",
    "pairs-emodb.both": "pairs EmoDB 15/16 × IEMOCAP S5: audio + text",
}


def cell(runs: Path, model: str, evaluation: str, key: str) -> str:
    path = runs / f"{model}.{evaluation}.json"
    if not path.exists():
        return "–"
    return f"{100 * json.loads(path.read_text())[key]:.2f}"


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    for evaluation, title in EVALS.items():
        first = runs / f"default.{evaluation}.json"
        n = json.loads(first.read_text())["n"] if first.exists() else "?"
        print(f"\n**{title}** (n = {n})\n")
        print("| model | WA | UA | WF1 | UWF1 |")
        print("|---|---:|---:|---:|---:|")
        for model, name in MODELS.items():
            print(f"| {name} | " + " | ".join(cell(runs, model, evaluation, k) for k in ("wa", "ua", "wf1", "uwf1")) + " |")


if __name__ == "__main__":
    main()
