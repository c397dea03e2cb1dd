"""What the pipeline heard, as a dialogue file: an end-to-end run's utterances for text evaluation.

    python benchmarks/asr_dialogues.py runs/e2e/NAME.json OUT_DIR [--run both:mono]

For each set of the run (``benchmarks/end_to_end.py``), writes ``OUT_DIR/SET.jsonl`` in the
``written`` dataset's layout (``dialogue``, ``turn``, ``speaker``, ``text``, ``label``): one line per
emitted utterance, with the transcript and speaker the pipeline gave it and the core4 label of the
true turn it overlaps most (no label, i.e. context only, where that turn is unscored or nothing
overlaps). Then

    emostream evaluate --dataset written --data OUT_DIR/SET.jsonl --split valid --modalities text --labels core4

scores a text model on Whisper's words, the runtime's speaker labels and its segmentation
instead of the clean transcript, in seconds instead of a replay (``scripts/context_weight.py``
uses it). Utterance-level, not turn-level, so close to, not equal to, the benchmark's UA.
Renders come from train/dev splits only, like the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import RENDER_VERSION  # noqa: E402
from models.labels import label_set  # noqa: E402


def dialogue_lines(set_name: str, details: list[dict], renders: Path) -> list[dict]:
    """One ``written``-layout row per emitted span of each dialogue in ``details``."""
    core4 = set(label_set("core4").labels)
    rows = []
    for dialogue in details:
        truth = json.loads((renders / set_name / f"{dialogue['dialogue']}.json").read_text())["turns"]
        for i, span in enumerate(sorted(dialogue["spans"], key=lambda s: s["start"])):
            overlap = [max(0.0, min(span["end"], t["end"]) - max(span["start"], t["start"])) for t in truth]
            best = max(range(len(truth)), key=overlap.__getitem__)
            row = {"dialogue": f"{set_name}-{dialogue['dialogue']}", "turn": i, "speaker": span["speaker"],
                   "text": span["text"] or "..."}  # an empty transcript still takes its place in the context
            if overlap[best] > 0 and truth[best].get("label") in core4:
                row["label"] = truth[best]["label"]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", type=Path, help="a benchmarks/end_to_end.py JSON (runs/e2e/NAME.json)")
    p.add_argument("out", type=Path, help="folder for SET.jsonl")
    p.add_argument("--run", default="both:mono", help="which run of the result (default both:mono)")
    p.add_argument("--renders", type=Path, default=ROOT / "runs" / "e2e" / "renders",
                   help="the benchmark's render cache (its --cache)")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (default 0)")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, figures in result["sets"].items():
        if args.run not in figures["runs"]:
            raise SystemExit(f"{args.result}: set {name} has no run {args.run!r}")
        rows = dialogue_lines(name, figures["runs"][args.run]["details"], args.renders / f"v{RENDER_VERSION}-seed{args.seed}")
        (args.out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)} utterances, {sum('label' in r for r in rows)} labelled -> {args.out / name}.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
