"""Text encoder time per utterance, as the streaming runtime calls it (one sentence at a time).

    python benchmarks/text_encoder.py [--threads 2] [--repeats 100] [--data FILE.jsonl]
                                      [--checkpoint F.pt | --encoder NAME_OR_LAYERS]

Embeds real utterances one by one (batch size 1, the runtime's case) with the encoder the shipped
checkpoint was trained with (or ``--encoder``: a base encoder's name such as ``mpnet-base-v2``, or
a tuned-layers file) and prints a markdown row: sentences, mean words, p50 / p95 / max in
ms of wall-clock time, the mean CPU time per sentence (all threads; what an idle machine's wall
time cannot be less than divided by the threads, and what a busy one does not inflate much), and
the load average beside them (the machine is shared; a busy one inflates the wall times).
Sentences come from ``--data`` (IEMOCAP-style JSON lines with a "text" field) or, without it, a
fixed set of conversational sentences. An encoder tuned on utterances in context
(``tune-text`` ``context_turns``) embeds each sentence read with its past turns, as its features
are made (``--data`` must then be IEMOCAP-style dialogues: "dialog", "turn", "speaker"); the mean
input length in tokens is printed with the row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

SENTENCES = (
    "Hi, how are you doing today?",
    "I can't believe you did that again, I told you a hundred times not to touch my things.",
    "It failed again. I am really sorry.",
    "That's wonderful news, congratulations!",
    "Okay.",
    "I don't know what to do anymore, everything I try just falls apart and nobody seems to care.",
    "Wait, what? You're moving to Canada next week?",
    "Could you pass me the salt, please?",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100, help="sentences timed")
    parser.add_argument("--data", type=Path, help="JSON lines with a 'text' field (e.g. IEMOCAP transcripts)")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/checkpoints/default.pt"),
                        help="time the text encoder this checkpoint was trained with")
    parser.add_argument("--encoder", help="time this encoder instead: a base name (minilm-l6-v2, mpnet-base-v2) "
                                          "or a tuned-layers .safetensors file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from models.checkpoint import load_checkpoint
    from models.features import in_context
    from models.frontends.text import ContextReader, InContext, TextEncoder, text_encoder_for

    if args.encoder:
        encoder = TextEncoder(args.encoder)
    else:
        checkpoint, _ = load_checkpoint(args.checkpoint)
        encoder = text_encoder_for(checkpoint.frontends["text"])
    items = [InContext(t) for t in SENTENCES]
    if args.data and encoder.context_turns:
        from models.data import load_dataset

        items = in_context(load_dataset("iemocap-text", args.data, keep_unlabelled=True).samples, encoder.context_turns)
        items = items[:: max(1, len(items) // args.repeats)]  # spread over the dialogues: early turns have less past
    elif args.data:
        items = [InContext(json.loads(line)["text"]) for line in args.data.read_text().splitlines() if line.strip()]
    elif encoder.context_turns:
        parser.error("an encoder tuned in context needs --data (dialogues to read each sentence's past turns from)")
    items = (items * (args.repeats // len(items) + 1))[: args.repeats]
    texts = [item.text for item in items]

    def embed(item: InContext) -> None:
        if encoder.context_turns:
            encoder.embed_in_context([item], encoder.context_tokens)
        else:
            encoder.embed([item.text])

    for item in items[:10]:  # warm-up
        embed(item)
    times = []
    cpu_start = time.process_time()
    for item in items:
        start = time.perf_counter()
        embed(item)
        times.append(1000 * (time.perf_counter() - start))
    cpu = 1000 * (time.process_time() - cpu_start) / len(texts)
    times.sort()
    words = statistics.mean(len(t.split()) for t in texts)
    load = os.getloadavg()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if encoder.context_turns:
        read = ContextReader(encoder.tokenize, encoder.context_tokens)
        tokens = statistics.mean(int(read([item])[1].sum()) for item in items)
        print(f"each sentence read with up to {encoder.context_turns} past turns: {tokens:.1f} tokens per input on average")
    print()
    print("| encoder | sentences | mean words | p50 (ms) | p95 (ms) | max (ms) | CPU per sentence (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {encoder.identity()['name']} | {len(texts)} | {words:.1f} | {statistics.median(times):.1f} | "
          f"{times[int(0.95 * len(times))]:.1f} | {times[-1]:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
