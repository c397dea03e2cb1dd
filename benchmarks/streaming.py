"""Streaming performance: latency, replay speed and memory of the replay path, as markdown.

    python benchmarks/streaming.py [--checkpoint PATH] [--minutes 31] [--cold-starts 3] [--out FILE]

Three runs of the full pipeline (``streamer.session.build_pipeline`` + ``run_session``, the
code path of ``emostream replay``), each in a fresh process so that its peak RSS is its own:

1. ``fast``: the example dialogue as fast as possible (``FastClock``, like ``--fast``).
2. ``realtime``: the example dialogue paced at real time (``RealTimeClock(1.0)``, ``--speed 1``).
3. ``long``: the example dialogue repeated to ``--minutes`` of audio, as fast as possible;
   latency per 5-minute bucket of stream time and RSS along the run.

Measured per run: model load (imports + ``build_pipeline``, seconds), replay wall time
(``run_session`` alone), each event's ``latency_ms`` (end-of-speech decision -> event, as the
pipeline reports it), RSS (``/proc/self/status`` VmRSS) at every runtime status report (every
0.5 s of wall time) and the process's peak RSS (``getrusage`` ru_maxrss). At real time also the
delay from the end of speech (``event.end``) to the event on the wall clock, which adds the
VAD hangover and the 0.1 s block pacing to the pipeline latency: what a listener waits.
Interim results (``partial`` events, on by default) are counted with their own cost.

Cold start: ``emostream listen`` started ``--cold-starts`` times (after one start that warms the
page cache) on the PulseAudio test server (``tests/audio_server.sh``); seconds from the process
start to its "recording from" line (the input is open and kept) and to "models loaded".

The tables go to stdout (and to ``--out``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("streaming_benchmark")

EXAMPLE = ROOT / "examples" / "dialogue.wav"
BUCKET_S = 300.0  # long run: latency is reported per this much stream time (5 minutes)
MIB = 1024 * 1024
WARM_S = 60.0  # long run: RSS growth is measured from this stream time (first inferences allocate)


class Pace(str, Enum):
    FAST = "fast"  # FastClock: as fast as the pipeline runs
    REAL_TIME = "realtime"  # RealTimeClock(1.0)


@dataclass(frozen=True)
class RunSpec:
    name: str
    audio: Path
    pace: Pace
    checkpoint: str | None  # None: the shipped default
    config: Path | None  # a settings file laid out like config.toml (None: the defaults)
    torch_threads: int  # torch.set_num_threads, as `emostream --threads` (default 1)


@dataclass(frozen=True)
class EventTiming:
    start: float  # stream seconds
    end: float  # stream seconds
    latency_ms: float  # the event's own latency_ms
    speech_end_delay_ms: float | None  # wall delay from event.end to emission; real time only


@dataclass(frozen=True)
class ColdStart:
    """One start of `emostream listen`, seconds from the process start."""

    recording_s: float  # to its "recording from" line: the input is open
    loaded_s: float  # to "models loaded"


@dataclass(frozen=True)
class Sample:
    """The process and the machine at one runtime status report."""

    stream_time: float  # seconds of audio processed
    wall: float  # time.perf_counter(), seconds
    rss_mib: float
    others_cpu_s: float  # busy CPU seconds of all processes since boot, minus this process's own


@dataclass
class RunResult:
    spec: RunSpec
    load_s: float  # imports + build_pipeline, wall seconds
    audio_s: float  # stream seconds processed
    wall_s: float  # run_session, wall seconds
    rss_after_load_mib: float
    peak_rss_mib: float  # ru_maxrss of the run's process
    checkpoint_sha256: str
    events: list[EventTiming] = field(default_factory=list)
    partial_ms: list[float] = field(default_factory=list)  # latency_ms of each partial event
    samples: list[Sample] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)  # stage -> per-call wall ms


# Per-utterance stages timed in place: (label, path to the object from the pipeline, method).
STAGES = [
    ("Whisper encoder pass", "transcriber.encoder", "encode"),
    ("transcribe (encoder + greedy decode)", "transcriber", "transcribe"),
    ("speaker attribution", "attributor", "assign"),
    ("MiniLM text embedding", "text_encoder", "embed"),
    ("fusion model", "predictor", "predict"),
]


def busy_cpu_s() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat, all cores)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


def rss_mib() -> float:
    """Resident set size of this process now, MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class ProbeSink:
    """A sink that timestamps each event on the wall clock and samples RSS at each status."""

    def __init__(self, origin: float | None) -> None:
        self.origin = origin  # time.monotonic() at stream time 0 (real time runs), else None
        self.events: list[EventTiming] = []
        self.partial_ms: list[float] = []
        self.samples: list[Sample] = []

    def header(self, settings: dict) -> None:
        pass

    def emit(self, event) -> None:
        delay = None if self.origin is None else 1000.0 * (time.monotonic() - self.origin - event.end)
        self.events.append(EventTiming(event.start, event.end, event.latency_ms, delay))

    def partial(self, event) -> None:
        self.partial_ms.append(event.latency_ms)

    def status(self, status) -> None:
        self.samples.append(Sample(status.stream_time, time.perf_counter(), rss_mib(), busy_cpu_s() - own_cpu_s()))

    def close(self, summary) -> None:
        pass


def time_stages(pipeline) -> dict[str, list[float]]:
    """Shadow each stage method of the pipeline's components with a timed wrapper (instance
    attribute); returns the lists the wrappers append per-call wall milliseconds to."""
    timings: dict[str, list[float]] = {}
    for label, path, method in STAGES:
        obj = pipeline
        for part in path.split("."):
            obj = getattr(obj, part)
        if obj is None:  # e.g. no text encoder for an audio-only checkpoint
            continue
        calls = timings.setdefault(label, [])

        def timed(*args, _inner=getattr(obj, method), _calls=calls, **kwargs):
            t = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                _calls.append(1000.0 * (time.perf_counter() - t))

        setattr(obj, method, timed)
    return timings


def measure(spec: RunSpec) -> RunResult:
    """One replay in this process (run it in a fresh one): load, replay, collect timings."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    t0 = time.perf_counter()
    import torch

    from streamer.config import load_settings
    from streamer.session import build_pipeline, run_session
    from streamer.sinks.base import RunState, Sinks
    from streamer.sources import FastClock, RealTimeClock, open_file, paced

    torch.set_num_threads(spec.torch_threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(spec.torch_threads, user_api="blas")  # as emostream --threads does
    fast = spec.pace is Pace.FAST
    settings = load_settings(spec.config).updated({"model": {"checkpoint": spec.checkpoint}, "input": {"fast": fast}})
    source = open_file(spec.audio)
    pipeline = build_pipeline(settings, source.channels)
    load_s = time.perf_counter() - t0
    rss_after_load = rss_mib()

    origin = None
    if fast:
        clock = FastClock()
    else:
        clock = RealTimeClock(1.0)
        clock.wait_until(0.0)  # fixes the clock's origin now
        origin = time.monotonic()
    probe = ProbeSink(origin)
    stages = time_stages(pipeline)
    t1 = time.perf_counter()
    run_session(
        paced(source.blocks(settings.input.block_s), clock), pipeline, Sinks([probe]), settings,
        RunState.REPLAYING, speed=None if fast else 1.0,
    )
    wall_s = time.perf_counter() - t1
    return RunResult(
        spec=spec, load_s=load_s, audio_s=pipeline.processed_until, wall_s=wall_s,
        rss_after_load_mib=rss_after_load,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        checkpoint_sha256=pipeline.model_identity.get("sha256", "unknown"),
        events=probe.events, partial_ms=probe.partial_ms, samples=probe.samples, stages=stages,
    )


def in_fresh_process(spec: RunSpec) -> RunResult:
    """measure(spec) in a newly spawned interpreter, so its peak RSS is that run's alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (spec,))


def cold_start() -> ColdStart:
    """Start `emostream listen` once; seconds to its "recording from" and "models loaded" lines."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("emostream")), "listen", "--json", "--no-display"], cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    recording = None
    try:
        for line in proc.stderr:
            if recording is None and "recording from" in line:
                recording = time.perf_counter() - t0
            if "models loaded" in line:
                return ColdStart(recording, time.perf_counter() - t0)
        raise RuntimeError("emostream listen ended before it loaded its models")
    finally:
        proc.terminate()
        proc.wait(30)


def audio_server() -> bool:
    """Start (or find) the PulseAudio test server; False when there is none to be had."""
    done = subprocess.run(["bash", str(ROOT / "tests" / "audio_server.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("no audio server (%s): cold start not measured", done.stderr.strip())
    return done.returncode == 0


def cold_start_table(starts: list[ColdStart], loads: list[str]) -> str:
    rows = [[i + 1, f"{s.recording_s:.2f}", f"{s.loaded_s:.1f}", load] for i, (s, load) in enumerate(zip(starts, loads))]
    return table(["start", "to \"recording from\" s", "to \"models loaded\" s", "load average before"], rows)


def repeat_wav(src: Path, dst: Path, minutes: float = 0.0, times: int | None = None) -> int:
    """Write src repeated back to back `times` times, or until it lasts at least `minutes`;
    returns the repetitions."""
    with wave.open(str(src)) as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    reps = times if times is not None else max(1, math.ceil(minutes * 60 * params.framerate / params.nframes))
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        for _ in range(reps):
            out.writeframes(frames)
    return reps


# --- report -----------------------------------------------------------------------------------


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list[list]) -> str:
    return "\n".join([row(header), row(["---"] * len(header))] + [row(r) for r in rows])


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} CPUs ({cpu}), {mem_kib / MIB:.1f} GiB RAM, Python {platform.python_version()}"


def load_average() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def git_commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def summary_table(runs: list[RunResult]) -> str:
    rows = []
    for r in runs:
        lat = [e.latency_ms for e in r.events]
        delays = [e.speech_end_delay_ms for e in r.events if e.speech_end_delay_ms is not None]
        rows.append([
            r.spec.name, f"{r.audio_s:.1f}", len(r.events), pct(lat, 50), pct(lat, 95),
            f"{max(lat):.0f}" if lat else "-",
            f"{pct(delays, 50)} / {pct(delays, 95)}" if delays else "-",
            f"{len(r.partial_ms)} ({pct(r.partial_ms, 50)} / {pct(r.partial_ms, 95)})",
            f"{r.wall_s:.1f}", f"{r.audio_s / r.wall_s:.1f}x", f"{r.load_s:.1f}",
            f"{r.rss_after_load_mib:.0f}", f"{r.peak_rss_mib:.0f}", others_cores(r.samples),
        ])
    header = [
        "run", "audio s", "events", "latency p50 ms", "p95 ms", "max ms",
        "speech end -> event p50 / p95 ms", "partials (p50 / p95 ms)", "replay wall s", "x real time", "model load s",
        "RSS after load MiB", "peak RSS MiB", "other processes, cores busy",
    ]
    return table(header, rows)


def others_cores(samples: list[Sample]) -> str:
    """Mean CPU cores other processes kept busy between the first and last of `samples`."""
    if len(samples) < 2 or samples[-1].wall <= samples[0].wall:
        return "-"
    return f"{(samples[-1].others_cpu_s - samples[0].others_cpu_s) / (samples[-1].wall - samples[0].wall):.2f}"


def stage_table(run: RunResult) -> str:
    rows = [[label, len(ms), f"{np.mean(ms):.0f}", pct(ms, 50), pct(ms, 95), f"{max(ms):.0f}"]
            for label, ms in run.stages.items() if ms]
    return table(["stage (per utterance)", "calls", "mean ms", "p50 ms", "p95 ms", "max ms"], rows)


def long_tables(run: RunResult) -> str:
    rows = []
    n_buckets = math.ceil(run.audio_s / BUCKET_S)
    for b in range(n_buckets):
        lo, hi = b * BUCKET_S, (b + 1) * BUCKET_S
        lat = [e.latency_ms for e in run.events if lo <= e.start < hi]
        inside = [s for s in run.samples if lo <= s.stream_time < hi]
        rows.append([
            f"{lo / 60:.0f}-{min(hi, run.audio_s) / 60:.0f}", len(lat), pct(lat, 50), pct(lat, 95),
            f"{max(lat):.0f}" if lat else "-", f"{max(s.rss_mib for s in inside):.0f}" if inside else "-",
            others_cores(inside),
        ])
    header = ["stream minutes", "events", "latency p50 ms", "p95 ms", "max ms", "max RSS MiB",
              "other processes, cores busy"]
    by_time = table(header, rows)
    if not run.samples:
        return by_time

    def near(t: float) -> Sample:
        return min(run.samples, key=lambda s: abs(s.stream_time - t))

    points = [
        ("start (first status report)", run.samples[0]),
        (f"after {WARM_S:.0f} s of audio (first inferences done)", near(WARM_S)),
        ("middle", near(run.audio_s / 2)),
        ("end", run.samples[-1]),
    ]
    rows = [["after model load", "", f"{run.rss_after_load_mib:.0f}"]]
    rows += [[label, f"{s.stream_time:.0f}", f"{s.rss_mib:.0f}"] for label, s in points]
    growth = run.samples[-1].rss_mib - near(WARM_S).rss_mib
    rows.append([f"growth from {WARM_S:.0f} s to the end", "", f"{growth:+.0f}"])
    memory = table(["point", "stream s", "RSS MiB"], rows)
    return by_time + "\n\nRSS along the run (VmRSS):\n\n" + memory


def report(runs: list[RunResult], long_run: RunResult | None, args: argparse.Namespace, loads: list[str],
           starts: list[ColdStart], start_loads: list[str]) -> str:
    ckpt = runs[0]
    parts = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; git {git_commit()}; "
        f"ASR: embedded tiny.en, int8, CPU; torch threads {args.threads}; "
        f"fusion checkpoint `{ckpt.spec.checkpoint or 'default (shipped)'}` sha256 `{ckpt.checkpoint_sha256}`; "
        f"settings: {f'`{args.config}`' if args.config else 'the config.toml defaults'}.",
        f"Load average (1/5/15 min) before each run: {'; '.join(loads)}.",
        "",
        "Command: `" + " ".join(["python", "benchmarks/streaming.py", *sys.argv[1:]]) + "`",
        "",
        summary_table(runs + ([long_run] if long_run else [])),
    ]
    timed = long_run or runs[0]
    parts += ["", f"Where the time goes, `{timed.spec.name}` (wall time per call):", "", stage_table(timed)]
    if long_run is not None:
        parts += ["", f"Long run, `{long_run.spec.name}`, per {BUCKET_S / 60:.0f} minutes of stream time:", "",
                  long_tables(long_run)]
    if starts:
        parts += ["", "Cold start of `emostream listen` (page cache warmed by one start before these), "
                  "seconds from the process start:", "", cold_start_table(starts, start_loads)]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="fusion checkpoint (default: the shipped models/checkpoints/default.pt)")
    parser.add_argument("--config", type=Path, help="settings laid out like config.toml (e.g. [speakers] feature)")
    parser.add_argument("--audio", type=Path, default=EXAMPLE, help="the recording to replay")
    parser.add_argument("--minutes", type=float, default=31.0, help="length of the long run; 0 skips it")
    parser.add_argument("--repeat", type=int, default=1,
                        help="play --audio this many times back to back in the fast and real-time runs (more events)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (as emostream --threads)")
    parser.add_argument("--cold-starts", type=int, default=3,
                        help="starts of `emostream listen` to time (needs tests/audio_server.sh); 0 skips them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not args.audio.is_file():
        parser.error(f"{args.audio} is not a file")

    loads = []

    def run(spec: RunSpec) -> RunResult:
        loads.append(f"{spec.name} {load_average()}")
        log.info("run %s (load average %s)", spec.name, load_average())
        result = in_fresh_process(spec)
        log.info("  %.1f s of audio in %.1f s", result.audio_s, result.wall_s)
        return result

    with tempfile.TemporaryDirectory() as tmp:
        audio, name = args.audio, args.audio.name
        if args.repeat > 1:
            audio, name = Path(tmp) / "repeated.wav", f"{args.audio.name} x{args.repeat}"
            repeat_wav(args.audio, audio, times=args.repeat)
        runs = [run(RunSpec(f"{name}, {pace.value}", audio, pace, args.checkpoint, args.config, args.threads))
                for pace in (Pace.FAST, Pace.REAL_TIME)]
    long_run = None
    if args.minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            long_audio = Path(tmp) / "long.wav"
            reps = repeat_wav(args.audio, long_audio, args.minutes)
            name = f"{args.audio.name} x{reps}, fast"
            long_run = run(RunSpec(name, long_audio, Pace.FAST, args.checkpoint, args.config, args.threads))
    starts, start_loads = [], []
    if args.cold_starts > 0 and audio_server():
        cold_start()  # warms the page cache
        for _ in range(args.cold_starts):
            start_loads.append(load_average())
            starts.append(cold_start())
            log.info("cold start: recording after %.2f s, models loaded after %.1f s",
                     starts[-1].recording_s, starts[-1].loaded_s)
    text = report(runs, long_run, args, loads, starts, start_loads)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
