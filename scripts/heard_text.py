"""What the pipeline hears from training dialogues: espeak-ng renders of train-split turns,
transcribed by the pipeline's own transcriber, for training on heard text.

    nice -n 10 python scripts/heard_text.py --config models/configs/default.toml --turns 4000 \
        --out runs/heard/train.jsonl

The dialogues are drawn from the training splits exactly as ``emostream train --config`` draws
them (same ``max_dialogues`` and seed), so every heard turn is a turn the fusion model trains on;
no validation or test dialogue is rendered. Each dialogue is spoken as the end-to-end benchmark
speaks its dev dialogues (``benchmarks/dialogues.py``: speaker A and B in one of its voice pairs,
per-turn rate 140-200 words/min and pitch 30-70, trimmed, -3 dBFS), and each turn is transcribed on
its own, with the segmenter's 90 ms preroll of silence in front of the speech (what the segmenter
hands the transcriber when a turn follows a pause), by :class:`streamer.transcriber.Transcriber`
with the settings of ``config.toml`` (Whisper tiny.en, beam 3). Nothing is written but ``--out``
(one JSON line per turn: ``dataset``, ``id``, ``dialogue``, ``turn``, ``text`` as in the corpus,
``spoken`` as espeak-ng read it, ``heard``, ``voice``); a run that was stopped resumes where it left
off. The turn budget is split over the ``--datasets`` in proportion to ``--shares``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import PITCH, RATE_WPM, VOICE_PAIRS, speakable, synthesise  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from models.data import load_dataset  # noqa: E402
from models.data.sample import Sample, dialogues  # noqa: E402
from models.errors import UserError  # noqa: E402
from models.training import split_draw  # noqa: E402
from models.training_config import TrainConfig  # noqa: E402

PREROLL_S = 0.09  # streamer.segmenter.SegmenterConfig.preroll_ms


def train_dialogues(config: TrainConfig, name: str) -> list[list[Sample]]:
    """The training dialogues of dataset ``name`` (one of the config's) as ``emostream train`` draws them."""
    spec = next(d for d in config.datasets if d.name == name)
    samples = load_dataset(spec.name, spec.path, keep_unlabelled=True).samples
    return dialogues(split_draw(samples, spec.train, spec.max_dialogues, config.seed))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "models" / "configs" / "default.toml")
    p.add_argument("--datasets", default="iemocap-text,meld,dailydialog,reccon")
    p.add_argument("--shares", default="3,3,2,2", help="relative turn budget of each dataset")
    p.add_argument("--turns", type=int, default=4000, help="turns to render and transcribe in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from models.frontends.whisper import WhisperEncoder
    from streamer.config import load_settings
    from streamer.transcriber import Transcriber

    try:
        config = TrainConfig.from_toml(args.config)
        names = args.datasets.split(",")
        shares = [float(s) for s in args.shares.split(",")]
        unknown = sorted(set(names) - {d.name for d in config.datasets})
        if unknown:
            raise UserError(f"--datasets: {', '.join(unknown)} not in {args.config}")
        if len(shares) != len(names):
            raise UserError("--shares needs one number per dataset")
    except (UserError, ValueError) as err:
        print(f"emostream: error: {err}", file=sys.stderr)
        return 2
    settings = load_settings(None)
    transcriber = Transcriber(WhisperEncoder(settings.asr.model, settings.asr.device, settings.asr.compute_type),
                              settings.asr.decoding)
    done = set()
    if args.out.is_file():
        done = {(r["dataset"], r["id"]) for r in map(json.loads, args.out.read_text().splitlines())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    preroll = np.zeros(round(PREROLL_S * SAMPLE_RATE), np.float32)
    with args.out.open("a") as out:
        for name, share in zip(names, shares):
            budget = round(args.turns * share / sum(shares))
            groups = train_dialogues(config, name)
            random.Random(f"{args.seed}:{name}").shuffle(groups)
            n = 0
            for index, dialogue in enumerate(groups):
                if n >= budget:
                    break
                rng = random.Random(f"{args.seed}:{name}:{dialogue[0].dialogue}")
                voices = VOICE_PAIRS[index % len(VOICE_PAIRS)]
                first = dialogue[0].speaker
                for sample in dialogue:
                    n += 1
                    voice = voices[0] if sample.speaker == first else voices[1]
                    rate, pitch = rng.randint(*RATE_WPM), rng.randint(*PITCH)  # drawn for every turn: reproducible
                    spoken = speakable(sample.text or "")
                    if (name, sample.id) in done or not spoken:
                        continue
                    speech = synthesise(spoken, voice, rate, pitch)
                    heard = transcriber.transcribe(np.concatenate([preroll, speech])).text
                    out.write(json.dumps({"dataset": name, "id": sample.id, "dialogue": sample.dialogue,
                                          "turn": sample.turn, "text": sample.text, "spoken": spoken,
                                          "heard": heard, "voice": voice}) + "\n")
                    out.flush()
            print(f"{name}: {n} turns", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
