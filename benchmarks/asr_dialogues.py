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

With ``--true-turns`` it writes, per set, the run's dialogues at their *true* turns and speakers
instead: ``SET-spoken.jsonl`` (the spoken text: the benchmark's ceiling) and ``SET-asr.jsonl``
(the transcriber's text of each true turn's span, ``asr.decoding`` of ``--config``, model
``--asr-model``). Scoring the three files (spoken, asr, the pipeline's ``SET.jsonl``) splits what
speech costs the emotions into word errors and segmentation + speaker errors
(docs/benchmarks.md, "End to end from speech", "Round 8: where speech loses the emotions").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import RENDER_VERSION, read_wav  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from models.labels import label_set  # noqa: E402


CORE4 = frozenset(label_set("core4").labels)


def true_turns(renders: Path, set_name: str, dialogue: str) -> list[dict]:
    """The rendered dialogue's ground truth: its turns (start, end, text, speaker, label, ...)."""
    return json.loads((renders / set_name / f"{dialogue}.json").read_text())["turns"]


def line(set_name: str, dialogue: str, turn: int, speaker: str, text: str, label: str | None) -> dict:
    """One ``written``-layout row; ``label`` kept only where core4 scores it (else context only).
    An empty text becomes "...": it still takes its place in the context."""
    row = {"dialogue": f"{set_name}-{dialogue}", "turn": turn, "speaker": speaker, "text": text or "..."}
    return {**row, "label": label} if label in CORE4 else row


def dialogue_lines(set_name: str, details: list[dict], renders: Path) -> list[dict]:
    """One ``written``-layout row per emitted span of each dialogue in ``details``."""
    rows = []
    for dialogue in details:
        truth = true_turns(renders, set_name, dialogue["dialogue"])
        for i, span in enumerate(sorted(dialogue["spans"], key=lambda s: s["start"])):
            overlap = [max(0.0, min(span["end"], t["end"]) - max(span["start"], t["start"])) for t in truth]
            best = max(range(len(truth)), key=overlap.__getitem__)
            label = truth[best].get("label") if overlap[best] > 0 else None
            rows.append(line(set_name, dialogue["dialogue"], i, span["speaker"], span["text"], label))
    return rows


def true_turn_lines(set_name: str, details: list[dict], renders: Path,
                    transcribe: Callable[[np.ndarray], str] | None) -> list[dict]:
    """One ``written``-layout row per true turn of each dialogue in ``details``: its spoken text,
    or (with ``transcribe``: float32 16 kHz audio -> text) what the transcriber makes of its span."""
    rows = []
    for dialogue in details:
        name = dialogue["dialogue"]
        audio = read_wav(renders / set_name / f"{name}.wav")[0][:, 0] if transcribe else None
        for turn in true_turns(renders, set_name, name):
            text = turn["text"]
            if transcribe is not None:
                text = transcribe(audio[round(turn["start"] * SAMPLE_RATE) : round(turn["end"] * SAMPLE_RATE)])
            rows.append(line(set_name, name, turn["turn"], turn["speaker"], text, turn.get("label")))
    return rows


def transcriber(config: Path | None, asr_model: str | None) -> Callable[[np.ndarray], str]:
    """The runtime's transcriber (``asr`` settings of ``config``, model ``asr_model`` if given)
    as audio -> text."""
    from models.frontends.whisper import WhisperEncoder
    from streamer.config import load_settings
    from streamer.transcriber import Transcriber

    settings = load_settings(config)
    model = asr_model if asr_model is not None else settings.asr.model
    encoder = WhisperEncoder(model, settings.asr.device, settings.asr.compute_type)
    ours = Transcriber(encoder, settings.asr.decoding)
    return lambda audio: ours.transcribe(audio).text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", type=Path, help="a benchmarks/end_to_end.py JSON (runs/e2e/NAME.json)")
    p.add_argument("out", type=Path, help="folder for SET.jsonl")
    p.add_argument("--run", default="both:mono", help="which run of the result (default both:mono)")
    p.add_argument("--renders", type=Path, default=ROOT / "runs" / "e2e" / "renders",
                   help="the benchmark's render cache (its --cache)")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (default 0)")
    p.add_argument("--true-turns", action="store_true",
                   help="also write SET-spoken.jsonl and SET-asr.jsonl: the true turns with their spoken text "
                        "and with the transcriber's text of each turn's span")
    p.add_argument("--config", type=Path, help="runtime settings for --true-turns (default: built-in)")
    p.add_argument("--asr-model", help="ASR model for --true-turns (default: the settings')")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    renders = args.renders / f"v{RENDER_VERSION}-seed{args.seed}"
    transcribe = transcriber(args.config, args.asr_model) if args.true_turns else None

    def write(name: str, rows: list[dict]) -> None:
        (args.out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)} utterances, {sum('label' in r for r in rows)} labelled -> {args.out / name}.jsonl")

    for name, figures in result["sets"].items():
        if args.run not in figures["runs"]:
            raise SystemExit(f"{args.result}: set {name} has no run {args.run!r}")
        details = figures["runs"][args.run]["details"]
        write(name, dialogue_lines(name, details, renders))
        if transcribe is not None:
            write(f"{name}-spoken", true_turn_lines(name, details, renders, None))
            write(f"{name}-asr", true_turn_lines(name, details, renders, transcribe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
