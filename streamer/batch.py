"""``emostream batch``: many recordings, one JSONL file each, resumable, on worker processes or Ray.

Every recording goes through the same path as ``emostream replay FILE --fast --json``
(:func:`streamer.session.run_session` over a fresh pipeline), so its file holds the same
``session``, ``utterance`` and ``summary`` lines. Interim ``partial`` lines are switched off
(``partials.every_s = 0``, echoed in the session line): a finished recording has no use for them,
and each costs a Whisper pass.

- Inputs: audio files, folders (searched recursively for :data:`AUDIO_SUFFIXES`), or manifests:
  ``.csv`` with a ``path`` column, ``.jsonl`` with a ``"path"`` key, ``.txt`` one path per line
  (relative paths are relative to the manifest's folder).
- Outputs: ``OUT/NAME.jsonl`` per recording (``NAME`` = the file's stem, plus a digest of its
  path when two inputs share a stem) and ``OUT/index.jsonl``: one line per input with
  ``input``, ``output``, ``status`` (``done``, ``skipped``: finished by an earlier run, or
  ``failed``), ``utterances``, ``duration_s``, ``seconds`` (wall time), ``cpu_s`` (the worker's
  CPU time on it, every thread) and ``error``.
- Resume: a file is written to a temporary name and renamed when complete, so an existing
  ``NAME.jsonl`` is always a finished one and is skipped.
- A recording that fails (unreadable, not audio) is reported in the index and on stderr; the
  batch goes on.
- Workers: ``workers`` local processes, each loading the models once; or, with ``ray_address``,
  as many Ray actors ("local": a Ray started here; else the address of a cluster, whose nodes
  must see the input paths). Results come back to this process, the only writer of ``OUT``.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import Settings
from .errors import UserError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".mka"})
MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".txt"})
INDEX_NAME = "index.jsonl"


@dataclass(frozen=True)
class Outcome:
    """What one recording gave. text: its JSON lines (None when it failed)."""

    input: str
    text: str | None
    utterances: int | None = None
    duration_s: float | None = None  # seconds of audio
    seconds: float | None = None  # wall-clock seconds it took
    cpu_s: float | None = None  # CPU seconds the worker process spent on it (all its threads)
    error: str | None = None


@dataclass(frozen=True)
class BatchReport:
    done: int
    skipped: int
    failed: int
    audio_s: float  # seconds of audio processed in this run
    wall_s: float  # seconds, the whole batch


# --- inputs and names ---------------------------------------------------------------------------


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Audio file paths from files, folders and manifests, in the order given, without repeats."""
    found: list[Path] = []
    for item in inputs:
        if not item.exists():  # a mistyped argument; a missing path in a manifest is reported instead
            raise UserError(f"input not found: {item}")
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.suffix.lower() in MANIFEST_SUFFIXES:
            found += read_manifest(item)
        else:
            found.append(item)  # an unreadable file is reported when it is processed
    return list(dict.fromkeys(found))


def read_manifest(path: Path) -> list[Path]:
    """Paths listed in a .csv (``path`` column), .jsonl (``"path"`` key) or .txt manifest."""
    if not path.is_file():
        raise UserError(f"manifest not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and "path" not in rows[0]:
                raise UserError(f"{path}: a CSV manifest needs a 'path' column")
            names = [row["path"] for row in rows]
        elif suffix == ".jsonl":
            names = [json.loads(line)["path"] for line in text.splitlines() if line.strip()]
        else:
            names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path}: every JSONL manifest line needs a \"path\" ({err})") from None
    return [p if p.is_absolute() else path.parent / p for p in map(Path, names)]


def output_names(paths: list[Path]) -> dict[Path, str]:
    """Output file name per input: ``STEM.jsonl``, with a path digest where stems collide."""
    stems = [p.stem for p in paths]
    return {
        p: (f"{p.stem}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}" if stems.count(p.stem) > 1 else p.stem) + ".jsonl"
        for p in paths
    }


# --- the work (in a worker process or a Ray actor) ------------------------------------------------


def batch_settings(settings: Settings) -> Settings:
    """The settings a batch runs with: the given ones, with interim results off."""
    return settings.updated({"partials": {"every_s": 0.0}})


class FileScorer:
    """Loaded models that score recordings one at a time, as ``replay --fast --json`` would.

    threads: the threads each of torch, CTranslate2 (Whisper) and numpy's BLAS may use. A batch
    runs one worker per core, each with one thread: more would only make the workers' thread
    pools compete for the cores (two CTranslate2 threads per worker used 10 % more CPU time for
    the same batch, docs/benchmarks.md "Batch").
    """

    def __init__(self, settings: Settings, threads: int = 1) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        from .api import Recognizer

        threads = max(1, threads)
        torch.set_num_threads(threads)
        threadpool_limits(threads, user_api="blas")
        self.recognizer = Recognizer(settings, asr_threads=threads)

    def score(self, path: str) -> Outcome:
        """One recording's JSON lines; a failure becomes an Outcome with the error, never a raise."""
        from .session import run_session
        from .sinks.base import RunState, Sinks
        from .sinks.jsonl import JsonlSink
        from .sources import FastClock, open_file, paced

        started, cpu = time.perf_counter(), time.process_time()
        settings = self.recognizer.settings
        try:
            source = open_file(path)
            pipeline = self.recognizer.pipeline(min(source.channels, 2))
            buffer = io.StringIO()
            result = run_session(
                paced(source.blocks(settings.input.block_s), FastClock()), pipeline,
                Sinks([JsonlSink(buffer)]), settings, RunState.REPLAYING, speed=None,
            )
        except UserError as err:
            return Outcome(path, None, error=str(err))
        except Exception as err:  # one bad recording must not stop the batch: logged whole, reported
            log.debug("scoring %s failed", path, exc_info=True)
            return Outcome(path, None, error=f"{type(err).__name__}: {err}")
        if result.interrupted:
            return Outcome(path, None, error="interrupted")
        return Outcome(path, buffer.getvalue(), len(result.events), round(pipeline.processed_until, 3),
                       round(time.perf_counter() - started, 3), round(time.process_time() - cpu, 3))


_scorer: FileScorer | None = None  # one per worker process


def _start_worker(settings: Settings, threads: int) -> None:
    """Process pool initializer: Ctrl-C is the parent's to handle; load the models once; end
    without the interpreter's teardown (:func:`_exit_at_once`)."""
    global _scorer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    atexit.register(_exit_at_once)
    _scorer = FileScorer(settings, threads)


def _exit_at_once() -> None:
    """A worker's last act (atexit): flush stdio and logging, then ``os._exit(0)``.

    The pool lets a worker exit only after the worker has sent every result through the
    pool's pipe, and a worker writes no files (the parent is the only writer of ``OUT``), so
    nothing is left to save. What ``os._exit`` skips is the interpreter tearing down the loaded
    torch and CTranslate2 modules object by object: 3.7-5.2 s between the last
    result and the end of the command on a busy machine, 0.3-0.5 s without it (docs/benchmarks.md
    "Batch"). The exit status is 0 as it was: the pool's workers return normally even when a
    recording or the initializer fails.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _score_in_worker(path: str) -> Outcome:
    assert _scorer is not None, "worker not started"
    return _scorer.score(path)


# Imported once by the fork server before any model is loaded or thread started; every worker is
# forked from it with them, instead of each spawned worker importing them again (2-3 CPU s each).
PRELOAD = ["torch", "faster_whisper", "tokenizers", "models.frontends.text", "streamer.session"]


def _noop() -> None:
    """A process that does nothing: forking it waits for the fork server to be ready."""


def _fork_server() -> multiprocessing.context.BaseContext:
    """The "forkserver" context, its server running with PRELOAD imported.

    It returns only once the server can fork (a no-op process has run), so the pool's workers
    start at once: were they forked while the server still imports, a Ctrl-C meanwhile would end
    the parent first and leave a late worker to fail on the parent's vanished locks.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    probe = context.Process(target=_noop, daemon=True)
    probe.start()
    probe.join()
    return context


def on_processes(paths: list[Path], settings: Settings, workers: int, threads: int) -> Iterator[Outcome]:
    """Outcomes as they finish, from ``workers`` local processes forked from a server that has
    imported the model code but loaded no model and started no thread (:func:`_fork_server`).

    Interrupted (Ctrl-C, SIGTERM, the caller stopping), it kills the workers instead of waiting
    for the recordings in progress: their outputs were not written, so a rerun does them again.
    """
    context = _fork_server()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(settings, threads))
    futures = [pool.submit(_score_in_worker, str(p)) for p in paths]
    try:
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool:
        raise UserError("a batch worker process died (see the messages above); finished outputs are kept") from None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in multiprocessing.active_children():
            process.kill()
        raise
    pool.shutdown()


def on_ray(paths: list[Path], settings: Settings, workers: int, threads: int, address: str) -> Iterator[Outcome]:
    """Outcomes as they finish, from ``workers`` Ray actors (a local Ray when address is "local")."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UserError("--ray needs Ray: pip install -e '.[ray]'") from None
    if address == "local":
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(FileScorer)
        pool = ActorPool([actor.remote(settings, threads) for _ in range(workers)])
        yield from pool.map_unordered(lambda scorer, path: scorer.score.remote(path), [str(p) for p in paths])
    finally:
        ray.shutdown()


# --- the driver -----------------------------------------------------------------------------------


def summary_of(path: Path) -> dict:
    """``utterances`` and ``duration_s`` from a finished file's summary line (its last)."""
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    return {"utterances": last.get("utterances"), "duration_s": last.get("duration_s")}


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name in the same folder, then rename."""
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def run_batch(
    inputs: Iterable[Path],
    out: Path,
    settings: Settings,
    workers: int = 2,
    ray_address: str | None = None,
    threads: int = 1,
    console: Console | None = None,
) -> BatchReport:
    """Score every recording not already finished in ``out``; write the index; report counts."""
    started = time.perf_counter()
    paths = collect_inputs(inputs)
    if not paths:
        raise UserError("no audio files found in the inputs")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    names = output_names(paths)
    rows = {p: {"input": str(p), "output": names[p], "status": None} for p in paths}
    todo = []
    for p in paths:
        if (out / names[p]).exists():
            rows[p].update(status="skipped", **summary_of(out / names[p]))
        else:
            todo.append(p)
    todo.sort(key=lambda p: -p.stat().st_size if p.is_file() else 0)  # longest first: even finish
    log.info("%d recordings: %d to do, %d finished earlier; %s", len(paths), len(todo), len(paths) - len(todo),
             f"Ray ({ray_address})" if ray_address else f"{min(workers, max(1, len(todo)))} worker process(es)")
    settings = batch_settings(settings)
    workers = min(workers, max(1, len(todo)))
    outcomes: Iterator[Outcome] = iter(())
    if todo:
        outcomes = (on_ray(todo, settings, workers, threads, ray_address) if ray_address
                    else on_processes(todo, settings, workers, threads))
    by_input = {str(p): p for p in todo}
    audio_s = 0.0
    with _progress(console) as progress:
        task = progress.add_task("batch", total=len(todo), speed="")
        for outcome in outcomes:
            path = by_input[outcome.input]
            if outcome.text is None:
                log.warning("%s: failed: %s", path, outcome.error)
                rows[path].update(status="failed", error=outcome.error)
            else:
                write_atomically(out / names[path], outcome.text)
                audio_s += outcome.duration_s or 0.0
                rows[path].update(status="done", utterances=outcome.utterances,
                                  duration_s=outcome.duration_s, seconds=outcome.seconds, cpu_s=outcome.cpu_s)
            elapsed = time.perf_counter() - started
            progress.update(task, advance=1, speed=f"{audio_s / 60:.1f} min audio, {audio_s / elapsed:.1f}x real time")
    index = "".join(json.dumps(row) + "\n" for row in rows.values())
    write_atomically(out / INDEX_NAME, index)
    count = {s: sum(r.get("status") == s for r in rows.values()) for s in ("done", "skipped", "failed")}
    report = BatchReport(count["done"], count["skipped"], count["failed"], round(audio_s, 1),
                         round(time.perf_counter() - started, 1))
    log.info("batch: %s; index: %s", json.dumps(asdict(report)), out / INDEX_NAME)
    return report


def _progress(console: Console | None) -> Progress:
    """A progress bar over recordings on stderr (only drawn on a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[speed]}"), console=console if console is not None else Console(stderr=True),
    )
