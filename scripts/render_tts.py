#!/usr/bin/env python
"""Render train/valid dialogue text with espeak-ng voices into a labelled audio+text manifest.

    python scripts/render_tts.py --out runs/tts \
        --source iemocap-text ../shared/data/text/iemocap/iemocap_text.jsonl train 0 \
        --source meld ../shared/data/text/meld/MELD train 300

Each ``--source DATASET PATH SPLIT N`` renders the first N dialogues (0 = all, in corpus order
after a seeded shuffle) of one split; test splits are refused. Writes ``OUT/manifest.jsonl`` and
``OUT/wav/*.wav`` (see models/data/tts.py). Never commit the output.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.data import load_dataset  # noqa: E402
from models.data.sample import Split, dialogues, parse_split  # noqa: E402
from models.data.tts import Augmentation, plan_dialogues, render_jobs, write_manifest  # noqa: E402
from models.errors import UserError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (manifest.jsonl, wav/)")
    parser.add_argument("--source", nargs=4, action="append", required=True,
                        metavar=("DATASET", "PATH", "SPLIT", "N"), help="dialogues to render (N = 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-p", type=float, default=0.3, help="probability of white noise per utterance")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = random.Random(args.seed)
    try:
        jobs = []
        for dataset, path, split, n in args.source:
            if parse_split(split, "--source") is Split.TEST:
                raise UserError(f"--source {dataset}: split {split!r} refused; render train or valid only")
            samples = load_dataset(dataset, Path(path), split=split, keep_unlabelled=True).samples
            chosen = dialogues(samples)
            rng.shuffle(chosen)
            chosen = chosen[: int(n)] if int(n) > 0 else chosen
            jobs += list(plan_dialogues([s for d in chosen for s in d], dataset, rng,
                                        Augmentation(noise_p=args.noise_p)))
            logging.info("%s %s: %d dialogues, %d utterances so far", dataset, split, len(chosen), len(jobs))
        start = time.perf_counter()
        rows = render_jobs(jobs, args.out, args.workers)
        write_manifest(rows, args.out / "manifest.jsonl")
    except UserError as err:
        print(f"emostream: error: {err}", file=sys.stderr)
        return 2
    logging.info("rendered %d utterances in %.0f s -> %s", len(rows), time.perf_counter() - start,
                 args.out / "manifest.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
