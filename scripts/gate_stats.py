#!/usr/bin/env python
"""How far a checkpoint's audio reliability gate opens, per dataset (network.audio_gate).

    python scripts/gate_stats.py --checkpoint runs/small_gate.pt \
        --manifest runs/tts/manifest.jsonl --split valid \
        --pairs ../shared/data/text/iemocap/iemocap_text.jsonl emodb ../shared/data/audio/emodb 03,08 \
        [--threshold 0.8 --out NEW.pt]

Prints the mean, 10th and 90th percentile of the target utterance's gate g (0 = its audio is
ignored, the text-only mode; 1 = used as without a gate) on the rendered synthetic-voice windows
of a manifest (audio + text at every turn) and on pseudo-pairs of acted clips with same-label
IEMOCAP turns of the same split, and the share of each below several thresholds (the gate is
closed to 0 below ``network.gate_threshold`` at inference). Use validation splits and speakers
only. ``--out`` writes the checkpoint with ``gate_threshold = --threshold``; the soft gate is
measured without any threshold the checkpoint already has.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.checkpoint import load_checkpoint  # noqa: E402
from models.evaluation import audio_features, select_samples, text_features  # noqa: E402
from models.predictor import load_network  # noqa: E402
from models.windows import build_windows, collate, pseudo_pairs  # noqa: E402


@torch.no_grad()
def gates(network, windows, text_table, audio_table) -> np.ndarray:
    """The target's gate for every window: float [N] in [0, 1]."""
    out = []
    for i in range(0, len(windows), 256):
        batch, _, _ = collate(windows[i : i + 256], text_table, audio_table)
        out.append(network(batch).audio_gate.numpy())
    return np.concatenate(out)


THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def report(name: str, g: np.ndarray) -> None:
    print(f"{name}: n={len(g)} mean {g.mean():.3f}  p10 {np.percentile(g, 10):.3f}  p90 {np.percentile(g, 90):.3f}")
    print("  share closed below " + "  ".join(f"{t:.2f}: {np.mean(g < t):.3f}" for t in THRESHOLDS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, help="rendered dialogues (scripts/render_tts.py)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--pairs", nargs=4, metavar=("IEMOCAP_TEXT", "AUDIO_DATASET", "PATH", "SPEAKERS"))
    parser.add_argument("--threshold", type=float, help="gate_threshold to write with --out")
    parser.add_argument("--out", type=Path, help="write the checkpoint with --threshold")
    args = parser.parse_args()
    if (args.threshold is None) != (args.out is None):
        parser.error("--threshold and --out go together")
    loaded, _ = load_checkpoint(args.checkpoint)
    checkpoint = loaded.with_network(gate_threshold=0.0)  # the soft gate, as trained
    network = load_network(checkpoint, torch.device("cpu"))
    if network.audio_gate is None:
        print("emostream: error: this checkpoint has no audio gate", file=sys.stderr)
        return 2
    labels, context = checkpoint.label_set, network.config.max_context
    if args.manifest:
        samples = select_samples("manifest", args.manifest, args.split, None)
        text_rows, text_table = text_features(samples, checkpoint)
        audio_rows, audio_table = audio_features(samples, checkpoint, None)
        windows, _ = build_windows(samples, labels, context, text_rows, audio_rows)
        report(f"synthetic voices ({args.manifest} {args.split})", gates(network, windows, text_table, audio_table))
    if args.pairs:
        text_path, dataset, path, speakers = args.pairs
        samples = select_samples("iemocap-text", Path(text_path), args.split, None)
        text_rows, text_table = text_features(samples, checkpoint)
        windows, _ = build_windows(samples, labels, context, text_rows, None)
        clips = [s for s in select_samples(dataset, Path(path), None, speakers.split(",")) if s.audio_path]
        clip_rows, clip_table = audio_features(clips, checkpoint, None)
        clip_windows, _ = build_windows(clips, labels, 1, None, clip_rows)
        pairs = pseudo_pairs(windows, clip_windows, random.Random(0))
        report(f"acted {dataset} speakers {speakers} paired with iemocap {args.split}",
               gates(network, pairs, text_table, clip_table))
    if args.out:
        loaded.with_network(gate_threshold=args.threshold).save(args.out)
        print(f"wrote {args.out} with gate_threshold {args.threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
