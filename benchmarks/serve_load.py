"""Load test of ``emostream serve``: concurrent clients stream recordings at real-time pace.

Starts ``emostream serve`` in a subprocess, waits for ``/healthz``, checks that the page at ``/``
loads, then runs ``--clients`` WebSocket clients at once. Client *i* streams rendered dialogue
*i* (``benchmarks/dialogues.py``: two espeak-ng voices, train/dev corpus dialogues, per-turn
truth) as 16 kHz s16le mono in ``--frame-ms`` frames, each sent when its audio would have been
recorded (real time), then ``{"type": "end"}``.

Measured per client: the record sequence (``session``, ``utterance`` …, ``summary``, close code
1000), and per utterance the **server latency**: wall time from sending the frame that holds the
utterance's end-of-speech decision point (``end`` + the VAD's hangover, the earliest the server
can decide) to receiving the utterance. Over all clients: segmentation recall and WER against the
truth (``benchmarks/e2e_metrics.py``, the end-to-end benchmark's definitions). The JSON's
``per_utterance`` lists each utterance's end (stream s), server latency (s) and ``pipeline_ms``
(the event's own ``latency_ms``: from the decision to the event, the wait for a worker excluded).

``--decisions`` starts no server: it runs the same recordings through the segmenter alone (the
serve defaults, mono voice attribution: with the speaker-change split) and reports, per
utterance, the stream seconds from its end to the frame that decides it. That part of the
latency does not depend on the machine's load (the VAD hangover, or the audio a speaker-change
test waits for); the server latency adds the processing and the wait for the CPU.

    python benchmarks/serve_load.py --clients 4
    python benchmarks/serve_load.py --clients 4 --decisions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import Recording, render_set  # noqa: E402
from benchmarks.e2e_metrics import Span, aggregate, score_dialogue  # noqa: E402
from benchmarks.end_to_end import SCORED, folded_labels, true_turns  # noqa: E402
from models.labels import LabelSet  # noqa: E402
from streamer.config import load_settings  # noqa: E402
from streamer.records import SAMPLE_RATE  # noqa: E402
from streamer.sources import open_file  # noqa: E402


@dataclass
class ClientResult:
    recording: Recording
    records: list[tuple[float, dict]] = field(default_factory=list)  # (seconds since start, record)
    close_code: int | None = None
    sent_until_s: float = 0.0  # audio seconds sent

    @property
    def sequence_ok(self) -> bool:
        """session first, utterances, summary last, closed normally (status frames, which report
        backpressure, may come in between and are counted apart)."""
        types = [r["type"] for _, r in self.records if r["type"] != "status"]
        return (len(types) >= 2 and types[0] == "session" and types[-1] == "summary"
                and all(t == "utterance" for t in types[1:-1]) and self.close_code == 1000)

    @property
    def utterances(self) -> list[tuple[float, dict]]:
        return [(t, r) for t, r in self.records if r["type"] == "utterance"]


def pcm16(path: Path) -> bytes:
    """The file as 16 kHz mono s16le bytes."""
    source = open_file(path)
    audio = np.concatenate([b.samples[:, 0] for b in source.blocks(1.0)])
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def run_client(url: str, recording: Recording, frame_s: float) -> ClientResult:
    result = ClientResult(recording)
    data = pcm16(recording.mono)
    frame_bytes = 2 * round(frame_s * SAMPLE_RATE)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        t0 = loop.time()

        async def send() -> None:
            for k, offset in enumerate(range(0, len(data), frame_bytes)):
                await asyncio.sleep(max(0.0, t0 + (k + 1) * frame_s - loop.time()))
                await ws.send_bytes(data[offset: offset + frame_bytes])
                result.sent_until_s = min(len(data), offset + frame_bytes) / 2 / SAMPLE_RATE
            await ws.send_str(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                result.records.append((loop.time() - t0, json.loads(msg.data)))
        await sender
        result.close_code = ws.close_code
    return result


def server_latencies(result: ClientResult, hangover_s: float, frame_s: float) -> list[float]:
    """Seconds from sending the frame holding ``end + hangover`` to receiving the utterance."""
    return [received - math.ceil((r["end"] + hangover_s) / frame_s - 1e-9) * frame_s
            for received, r in result.utterances]


def decision_delays(recordings: list[Recording]) -> dict:
    """Stream seconds from each utterance's end to the frame that decided it (``decided_at``),
    through the segmenter of the serve defaults (mono: with the speaker-change split); p50/p95/max."""
    from streamer.framing import Framer
    from streamer.records import AudioBlock
    from streamer.segmenter import Segmenter
    from streamer.speaker_change import SpeakerChangeConfig, SpeakerChangeDetector

    import torch

    torch.set_num_threads(1)  # as emostream does (--threads 1); more only spin on a shared machine
    vad = load_settings().vad
    delays = []
    for recording in recordings:
        audio = np.frombuffer(pcm16(recording.mono), "<i2").astype(np.float32) / 32768.0
        change = SpeakerChangeDetector(SpeakerChangeConfig(distance=vad.voice_change_distance))
        framer, segmenter = Framer(0, vad.frame_ms), Segmenter(vad, 0, speaker_change=change)
        step = round(0.1 * SAMPLE_RATE)
        utterances = [u for i in range(0, len(audio), step)
                      for f in framer.feed(AudioBlock(audio[i : i + step, None], i / SAMPLE_RATE)) for u in segmenter.feed(f)]
        delays += [u.decided_at - u.end for u in utterances + segmenter.flush()]
    return {"utterances": len(delays), "voice_change_distance": vad.voice_change_distance,
            "decision_delay_s": {q: round(float(np.percentile(delays, p)), 3) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}}


def wait_healthy(base: str, process: subprocess.Popen, timeout_s: float = 300) -> float:
    """Poll /healthz until 200; seconds it took."""
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise SystemExit(f"serve_load: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.5)
    raise SystemExit("serve_load: the server did not become healthy")


def page_loads(base: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{base}/", timeout=10) as reply:
        return reply.status == 200 and b"<html" in reply.read().lower()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes (the server, once it exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--sets", default="everyday,iemocap,meld", help="benchmarks/dialogues.py sets to draw from")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--frame-ms", type=int, default=100, help="audio per WebSocket frame")
    p.add_argument("--workers", type=int, default=2, help="emostream serve --workers")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "serving" / "load.json")
    p.add_argument("--decisions", action="store_true", help="no server: stream seconds from speech end to decision")
    args = p.parse_args()

    names = args.sets.split(",")
    per_set = math.ceil(args.clients / len(names))
    cache = ROOT / "runs" / "e2e" / "renders"
    pool = [r for name in names for r in render_set(name, args.data, per_set, 0, cache)]
    recordings = sorted(pool, key=lambda r: -r.duration)[: args.clients]  # the longest ones
    if args.decisions:
        print(json.dumps(decision_delays(recordings), indent=1))
        return 0

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamer.cli", "serve", "--port", str(port), "--workers", str(args.workers)]
    cpu_before = children_cpu_s()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(command, stderr=open(args.out.with_suffix(".server.log"), "w"))
    try:
        ready_s = wait_healthy(base, server)
        page = page_loads(base)
        load_before = load_average()
        frame_s = args.frame_ms / 1000

        async def clients() -> list[ClientResult]:
            url = f"ws://127.0.0.1:{port}/v1/stream?sample_rate={SAMPLE_RATE}&channels=1"
            return await asyncio.gather(*(run_client(url, r, frame_s) for r in recordings))

        started = time.perf_counter()
        results = asyncio.run(clients())
        wall_s = time.perf_counter() - started
        load_after = load_average()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    server_cpu_s = children_cpu_s() - cpu_before  # model loading included

    hangover_s = load_settings().vad.hangover_ms / 1000
    latencies, scores, per_utterance = [], [], []
    for i, res in enumerate(results):
        client = server_latencies(res, hangover_s, frame_s)
        latencies += client
        per_utterance += [{"client": i, "end": round(r["end"], 2), "latency_s": round(latency, 3),
                           "pipeline_ms": round(r["latency_ms"])} for (_, r), latency in zip(res.utterances, client)]
        utterances = [r for _, r in res.utterances]
        model_set = LabelSet("model", tuple(utterances[0]["model"]["labels"].split(","))) if utterances else SCORED
        emotions = folded_labels([u["emotions"] for u in utterances], model_set)
        revised = {r["id"]: r["speaker"] for u in utterances for r in u["speaker_revisions"]}  # the latest wins
        spans = [Span(u["start"], u["end"], u["text"], u["speaker"], e, revised.get(u["id"]))
                 for u, e in zip(utterances, emotions)]
        scores.append(score_dialogue(true_turns(res.recording), spans, SCORED.labels))
    figures = aggregate(scores, SCORED.labels)
    report = {
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "clients": args.clients, "workers": args.workers, "frame_ms": args.frame_ms,
        "recordings": [f"{r.set}/{r.dialogue} ({r.duration:.1f} s)" for r in recordings],
        "audio_s_per_client": [round(r.duration, 1) for r in recordings],
        "server_ready_s": round(ready_s, 1), "page_loads": page, "wall_s": round(wall_s, 1),
        "all_sequences_ok": all(r.sequence_ok for r in results),
        "close_codes": [r.close_code for r in results],
        "status_frames": sum(1 for r in results for _, rec in r.records if rec["type"] == "status"),
        "utterances": len(latencies),
        "latency_s": {q: round(float(np.percentile(latencies, p)), 3) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}
        if latencies else {},
        "segmentation_recall": round(figures["segmentation_recall"], 3), "wer": round(figures["wer"], 3),
        "speaker_accuracy": round(figures["speaker_accuracy"], 3),
        "speaker_accuracy_revised": round(figures["speaker_accuracy_revised"], 3),
        "server_cpu_s": round(server_cpu_s, 1),
        "audio_s": round(sum(r.duration for r in recordings), 1),
        "load_average_before": load_before, "load_average_after": load_after, "cpus": os.cpu_count(),
    }
    args.out.write_text(json.dumps(report | {"per_utterance": per_utterance}, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if report["all_sequences_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
