"""Throughput of ``emostream batch`` on rendered dialogues, local worker processes and Ray.

Renders (or reuses) ``--dialogues`` two-voice dialogues of the train/dev corpus splits
(``benchmarks/dialogues.py``, mono mixes), lists them in a manifest, and times the whole command
``emostream batch MANIFEST --out DIR --workers N`` from start to exit (Python start-up and every
worker's model loading included), then the same with ``--ray``. Reports the audio duration over
the wall time (x real time) and over the CPU time used (what idle cores would give, for a machine
shared with other work), the JSONL files written, and the share of utterance events that are
identical between the two runs (every key but ``latency_ms``, event by event).

    python benchmarks/batch.py --dialogues 16 --workers 2
    python benchmarks/batch.py --dialogues 16 --no-ray --repeat 5   # the local run 5 times: each, and the median
    python benchmarks/batch.py --dialogues 16 --profile     # CPU seconds per stage, one worker

``--profile`` times nothing end to end: this process loads the models as one batch worker does
(one thread) and replays every recording through them (``Recognizer.replay``, the events of a
batch worker) under cProfile on the CPU clock; it reports the load and each stage's CPU seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import render_set  # noqa: E402


def events(path: Path) -> list[dict]:
    """A batch output's utterance lines without the wall-clock field."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in records if r["type"] == "utterance"]


def identical_share(a: Path, b: Path) -> tuple[int, int]:
    """(events equal at the same position in both folders, events in the larger of each pair)."""
    same = total = 0
    for left in sorted(a.glob("*.jsonl")):
        if left.name == "index.jsonl":
            continue
        x, y = events(left), events(b / left.name) if (b / left.name).exists() else []
        same += sum(p == q for p, q in zip(x, y))
        total += max(len(x), len(y))
    return same, total


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_batch(manifest: Path, out: Path, extra: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``emostream batch`` command, from a fresh output folder.

    CPU seconds count the command and the processes it waited for (its workers; Ray's actors only
    as far as Ray reaps them before it exits).
    """
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "streamer.cli", "batch", str(manifest), "--out", str(out), *extra]
    started, cpu = time.perf_counter(), children_cpu_s()
    with log.open("w") as stderr:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"batch: {' '.join(command)} exited with {done.returncode}; see {log}")
    return wall, children_cpu_s() - cpu


def figures(out: Path, audio_s: float, wall: float, cpu: float) -> dict:
    """Speed figures of one run: against wall time, and against the CPU time it used.

    ``cpu_s``: the command's own CPU time and that of the processes it reaped (not the workers:
    they are children of the fork server, or Ray's actors); ``workers_cpu_s``: the workers' CPU
    time on the recordings (index ``cpu_s``, model loading excluded); ``x_real_time_per_cpu_s``:
    audio seconds per worker CPU second, what one otherwise idle core would give;
    ``workers_busy_s``: sum over recordings of the wall time a worker spent on it.
    """
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    workers_cpu = sum(r.get("cpu_s") or 0 for r in rows)
    return {"wall_s": round(wall, 1), "x_real_time": round(audio_s / wall, 1), "cpu_s": round(cpu, 1),
            "workers_cpu_s": round(workers_cpu, 1),
            "x_real_time_per_cpu_s": round(audio_s / workers_cpu, 1) if workers_cpu else None,
            "workers_busy_s": round(sum(r.get("seconds") or 0 for r in rows), 1),
            "jsonl_files": len(list(out.glob("*.jsonl"))) - 1, "load_average_after": load_average()}


# (file, function) -> stage; cumulative CPU time, so a stage includes what it calls
STAGES = {
    ("models/frontends/speaker.py", "_states"): "CAM++ states asked for",
    ("models/frontends/speaker.py", "fbank"): "CAM++ fbank (one per network pass)",
    ("models/frontends/speaker.py", "embed_spans"): "CAM++ for the speaker-change look",
    ("models/frontends/speaker.py", "embed"): "CAM++ for the voice print",
    ("models/frontends/whisper.py", "encode"): "Whisper encoder",
    ("streamer/transcriber.py", "_decode"): "Whisper decoder",
    ("models/frontends/text.py", "embed"): "MiniLM",
    ("models/predictor.py", "predict"): "fusion model",
    ("streamer/pipeline.py", "feed"): "pipeline.feed: all stages",
}


def profile_stages(paths: list[Path], threads: int = 1) -> dict:
    """CPU seconds of one batch worker: loading the models, then each stage over ``paths``."""
    from streamer.batch import FileScorer, batch_settings
    from streamer.config import load_settings

    started = time.process_time()
    scorer = FileScorer(batch_settings(load_settings()), threads)
    load_s = time.process_time() - started
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    events = sum(1 for path in paths for _ in scorer.recognizer.replay(path))
    profiler.disable()
    scoring_s = time.process_time() - started - load_s
    stages = {}
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # (file, line, function) -> counts, times
    for (file, _, function), (_, calls, _, cumulative, _) in entries.items():
        for (suffix, name), stage in STAGES.items():
            if function == name and file.endswith("/" + suffix):
                stages[stage] = {"cpu_s": round(cumulative, 2), "calls": calls}
    return {"load_cpu_s": round(load_s, 2), "scoring_cpu_s": round(scoring_s, 2), "events": events, "stages": stages}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dialogues", type=int, default=16)
    p.add_argument("--sets", default="everyday,meld,iemocap")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--repeat", type=int, default=1,
                   help="time the local run this many times; report each speed and the median run "
                        "(this machine's speed drifts by about 15 %% from minute to minute)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "serving" / "batch")
    p.add_argument("--profile", action="store_true", help="CPU seconds per stage of one worker, in this process")
    args = p.parse_args()

    names = args.sets.split(",")
    cache = ROOT / "runs" / "e2e" / "renders"
    per_set = [args.dialogues // len(names) + (i < args.dialogues % len(names)) for i in range(len(names))]
    recordings = [r for name, n in zip(names, per_set) for r in render_set(name, args.data, n, 0, cache)]
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "manifest.txt"
    manifest.write_text("".join(f"{r.mono.resolve()}\n" for r in recordings))
    audio_s = sum(r.duration for r in recordings)

    report: dict = {
        "command": "python benchmarks/batch.py " + " ".join(sys.argv[1:]),
        "recordings": len(recordings), "audio_s": round(audio_s, 1), "workers": args.workers,
        "cpus": os.cpu_count(), "load_average_before": load_average(),
    }
    if args.profile:
        report["profile"] = profile_stages([r.mono.resolve() for r in recordings])
        (args.work / "profile.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return 0
    local = args.work / "local"
    runs = [figures(local, audio_s, *timed_batch(manifest, local, ["--workers", str(args.workers)], args.work / "local.log"))
            for _ in range(max(1, args.repeat))]
    report["local"] = sorted(runs, key=lambda r: r["x_real_time"])[len(runs) // 2]  # the median run
    report["local"]["x_real_time_runs"] = [r["x_real_time"] for r in runs]
    if not args.no_ray:
        ray_out = args.work / "ray"
        report["ray"] = figures(ray_out, audio_s, *timed_batch(
            manifest, ray_out, ["--workers", str(args.workers), "--ray"], args.work / "ray.log"))
        same, total = identical_share(local, ray_out)
        report["ray"].update(identical_events=f"{same}/{total}", identical_share=round(same / max(1, total), 4))
    (args.work / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
