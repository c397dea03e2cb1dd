"""Fusion forward time per utterance with a full context, and parameter counts.

    python benchmarks/fusion_forward.py [--context 16] [--threads 1] [--repeats 300]

Times one streaming prediction: a window of ``--context`` utterances (audio + text vectors, the
target last), batch size 1, as the runtime calls it. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from models.networks import FusionBatch, FusionConfig, build_network, count_parameters


def window(config: FusionConfig, T: int) -> FusionBatch:
    """One random window of T utterances, both modalities present."""
    g = torch.Generator().manual_seed(0)
    return FusionBatch(
        audio=torch.randn(1, T, config.audio_dim, generator=g),
        text=torch.randn(1, T, config.text_dim, generator=g),
        audio_present=torch.ones(1, T, dtype=torch.bool),
        text_present=torch.ones(1, T, dtype=torch.bool),
        speaker=torch.randint(0, 2, (1, T), generator=g),
        valid=torch.ones(1, T, dtype=torch.bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), context {args.context} utterances, batch 1\n")
    print("| network | parameters | forward p50 (ms) | forward p95 (ms) |")
    print("|---|---:|---:|---:|")
    for kind in ("mcaf", "self-mha", "cross-mha"):
        config = FusionConfig(n_classes=4, network=kind, max_context=args.context, dropout=0.2)
        network = build_network(config).eval()
        batch = window(config, args.context)
        times = []
        with torch.inference_mode():
            for _ in range(20):
                network(batch)
            for _ in range(args.repeats):
                start = time.perf_counter()
                network(batch)
                times.append(1000 * (time.perf_counter() - start))
        times.sort()
        p95 = times[int(0.95 * len(times))]
        print(f"| {kind} | {count_parameters(network):,} | {statistics.median(times):.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
