"""A session: build the pipeline from settings, drive it over a block source, fan out to sinks.

This is the only place where the stages meet I/O: the source yields blocks (paced by a clock or
by a microphone), the pipeline turns them into events, the sinks write them. Ctrl-C ends the
loop; what was emitted stays emitted and the summary is still written.

Start-up: the models take seconds to load, so a live session opens its input at once and loads
them in a background thread (:func:`load_in_background`); the audio heard meanwhile is kept, all
of it, and processed once they are ready. Nothing here imports torch at module level.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TypeVar

from models.frontends.identity import same_frontend

from .config import Settings
from .errors import UserError
from .records import AudioBlock, EmotionEvent, PartialEvent, Speaker
from .sinks.base import RunState, RuntimeStatus, Sinks
from .sinks.summary import summarize
from .speakers import SpeakerMode, make_attributor

if TYPE_CHECKING:  # torch and CTranslate2 load with these; imported where the models load
    from models.predictor import EmotionPredictor

    from .pipeline import Pipeline
    from .transcriber import Transcriber

log = logging.getLogger(__name__)

STATUS_EVERY_S = 0.5  # wall-clock seconds between status reports to the sinks


@dataclass(frozen=True)
class LoadedModels:
    """The models a session needs, loaded once and shared read-only by any number of pipelines.

    transcriber: Whisper (encoder + decoder) with the decoding options. predictor: the fusion
    checkpoint. text_encoder: MiniLM, or None when the model is given no text. use_audio: give
    the model the acoustic vector. feature_encoder: the checkpoint's own Whisper encoder when the
    ASR model is another one (None: reuse the ASR encoder pass).
    """

    transcriber: Transcriber
    predictor: EmotionPredictor
    text_encoder: object | None
    use_audio: bool
    feature_encoder: object | None


def load_models(settings: Settings, asr_threads: int | None = None) -> LoadedModels:
    """Load the models the settings name (seconds: Whisper, the checkpoint and MiniLM).

    asr_threads: CTranslate2 threads per Whisper call (None: one per core, at most 4); a batch
    worker, one of N on N cores, wants 1.
    """
    from models.frontends.whisper import WhisperEncoder
    from models.predictor import EmotionPredictor

    from .transcriber import Transcriber

    asr = WhisperEncoder(settings.asr.model, settings.asr.device, settings.asr.compute_type, asr_threads)
    predictor = EmotionPredictor(settings.model.checkpoint, settings.model.device)
    wanted = settings.model.modalities
    if wanted not in ("both", "audio", "text"):
        raise UserError(f"model.modalities must be both, audio or text, not {wanted!r}")
    use_audio = wanted in ("both", "audio") and "audio" in predictor.frontends
    feature_encoder = None
    if use_audio and not same_frontend(predictor.frontends["audio"], asr.identity()):
        # The ASR model is not the one the checkpoint's acoustic features came from: run the
        # checkpoint's own frontend for the features (the embedded tiny.en encoder, or every
        # layer of Whisper base: a PyTorch pass of its own, models.frontends.audio).
        from models.frontends.audio import audio_frontend_for

        feature_encoder = audio_frontend_for(predictor.frontends["audio"], None, settings.asr.device,
                                             settings.asr.compute_type, asr_threads)
        if not same_frontend(predictor.frontends["audio"], feature_encoder.identity()):
            raise UserError(
                f"the checkpoint's audio features came from {predictor.frontends['audio'].get('name')}, "
                "which is not available here; use --modalities text or a matching checkpoint"
            )
    text_encoder = None
    if wanted in ("both", "text") and "text" in predictor.frontends:
        from models.frontends.text import text_encoder_for

        text_encoder = text_encoder_for(predictor.frontends["text"])
    return LoadedModels(
        transcriber=Transcriber(asr, settings.asr.decoding),
        predictor=predictor,
        text_encoder=text_encoder,
        use_audio=use_audio,
        feature_encoder=feature_encoder,
    )


def make_pipeline(models: LoadedModels, settings: Settings, channels: int) -> Pipeline:
    """A fresh stateful pipeline for one stream of ``channels`` (1 or 2) over loaded models (cheap)."""
    from .pipeline import Pipeline

    speakers = settings.speakers.resolve(channels)
    known_speakers = {
        SpeakerMode.CHANNEL: speakers.channel_map,
        SpeakerMode.SINGLE: (Speaker.A,) * channels,
    }.get(speakers.mode)  # voice attribution decides only once an utterance has ended
    return Pipeline(
        channels=channels,
        segmenter=settings.vad,
        transcriber=models.transcriber,
        attributor=make_attributor(speakers),
        predictor=models.predictor,
        text_encoder=models.text_encoder,
        use_audio=models.use_audio,
        context=settings.context,
        feature_encoder=models.feature_encoder,
        partial_every_s=settings.partials.every_s,
        known_speakers=known_speakers,
    )


def build_pipeline(settings: Settings, channels: int) -> Pipeline:
    """Load the models the settings name and assemble the pipeline for ``channels`` (1 or 2)."""
    return make_pipeline(load_models(settings), settings, channels)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; what kill, systemd and docker send


@contextmanager
def stop_on_signals(stop: threading.Event, received: list[int], busy: threading.Event) -> Iterator[None]:
    """While inside, the first SIGINT (Ctrl-C) or SIGTERM sets ``stop``, appends the signal
    number to ``received``, and the caller ends at its next block; a second one raises
    KeyboardInterrupt. While ``busy`` is set (the pipeline is working on a block: seconds of
    Whisper on a loaded machine), the first one also raises ``_Stopped`` at once: the work in
    progress belongs to the utterance that is dropped anyway.

    A KeyboardInterrupt raised wherever the main thread happens to be can be swallowed by
    library code that runs Python callbacks (about one Ctrl-C in ten was lost that way); a flag
    checked once per block cannot. SIGTERM's default action would end the process at once,
    without the summary. Outside the main thread the default handling stays.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()
        if busy.is_set():
            busy.clear()
            raise _Stopped

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


T = TypeVar("T")


def load_in_background(load: Callable[[], T]) -> Future[T]:
    """Start ``load()`` (seconds of model loading) in a daemon thread; the future holds its
    result or the exception it raised. A daemon thread, so Ctrl-C during loading ends at once."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(load())
        except Exception as exc:  # handed to the session, which raises it in the main thread
            future.set_exception(exc)

    threading.Thread(target=work, name="emostream-load", daemon=True).start()
    return future


class LagMeter:
    """How far processing trails the source, in seconds of stream.

    The source's stream time is the wall time since the first block arrived, times ``speed``,
    plus where that block ended: the origin is the first block's arrival, not the start of the
    session, so the time a device takes to open and deliver its first audio is not counted as
    lag (it showed as a constant ``lag 2.05 s`` on an idle input). As fast as possible (speed
    None) the source waits for the pipeline, so the lag is 0.
    """

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._origin: float | None = None  # time.perf_counter() at stream time 0, seconds

    def arrived(self, block: AudioBlock) -> None:
        if self._origin is None and self.speed is not None:
            self._origin = time.perf_counter() - (block.start + block.duration) / self.speed

    def behind(self, processed_until: float) -> float:
        """Seconds of stream received but not yet processed (>= 0)."""
        if self._origin is None or self.speed is None:
            return 0.0
        return max(0.0, (time.perf_counter() - self._origin) * self.speed - processed_until)


@dataclass(frozen=True)
class SessionResult:
    events: list[EmotionEvent]
    interrupted: bool  # ended by Ctrl-C or SIGTERM
    stopped_by: int | None = None  # the signal that ended it (signal.SIGINT / SIGTERM), if one did


def run_session(
    blocks: Iterable[AudioBlock],
    pipeline: Pipeline | Future[Pipeline],
    sinks: Sinks,
    settings: Settings,
    state: RunState,
    speed: float | None = 1.0,
    input_health: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
) -> SessionResult:
    """Feed every block through the pipeline and every event to the sinks.

    pipeline: ready, or still loading (a future from :func:`load_in_background`). While it
    loads, a paced source's blocks are kept in memory, all of them (the microphone's own queue
    is bounded and would drop them), and fed once it is ready; a source read as fast as possible
    (speed None) waits for it instead. The status reports ``RunState.LOADING`` meanwhile.
    speed: the pace the source delivers stream time at (1.0 live, None as fast as possible), to
    compute the processing lag. input_health: () -> (queue depth, dropped blocks, overflows).
    Interim results (``pipeline.partials()``) are polled after each block of a paced source
    unless processing trails it by more than ``settings.partials.max_lag_s``; a source read as
    fast as possible gets none (nobody waits for them, and they cost a Whisper pass each), and
    its pipeline does not work ahead (``Pipeline.work_ahead``) for the same reason.
    """
    events: list[EmotionEvent] = []
    stop = threading.Event()
    lag = LagMeter(speed)
    loading = pipeline if isinstance(pipeline, Future) else None
    ready: Pipeline | None = None if loading is not None else pipeline
    if ready is not None:
        ready.work_ahead = speed is not None
    heard: list[AudioBlock] = []  # blocks that arrived while the models were loading
    last_status = float("-inf")
    max_seconds = settings.input.max_seconds

    def processed_until() -> float:
        return ready.processed_until if ready is not None else 0.0

    def report(run_state: RunState) -> None:
        done = processed_until()
        depth, dropped, overflows = input_health()
        sinks.status(RuntimeStatus(done, lag.behind(done), depth, dropped, overflows, run_state))

    def emit(new: list[EmotionEvent]) -> None:
        for event in new:
            # Counted before it is written: a Ctrl-C that lands just after the JSON line was
            # written must not leave the line out of the summary.
            events.append(event)
            sinks.emit(event)

    def work(step: Callable[[], list[T]]) -> list[T]:
        """Run a pipeline step (feed, partials, flush); a stop signal aborts the wait at once."""
        busy.set()
        try:
            return worker.run(step) if worker is not None else step()
        finally:
            busy.clear()

    def emit_partials(new: list[PartialEvent]) -> None:
        for event in new:
            sinks.partial(event)

    def take_loaded() -> Pipeline:
        """Wait for the models, then feed what was heard meanwhile (as fast as it runs)."""
        assert loading is not None
        while not loading.done():  # not loading.result(): it would hold a Ctrl-C until loaded
            if stop.wait(0.05):
                raise _Stopped
        try:
            loaded = loading.result()  # the loader's exception, if any, is raised here
        except BaseException:
            failed_to_load.set()
            raise
        begin()
        loaded.work_ahead = speed is not None
        log.info("models loaded; processing the %.1f s of audio heard meanwhile",
                 sum(b.duration for b in heard))
        for block in heard:
            if stop.is_set():
                break
            emit(work(lambda: loaded.feed(block)))
        heard.clear()
        return loaded

    def begin() -> None:
        """The ``session`` header, once: written when the models are ready, so that a model that
        fails to load (checked in the background while a microphone already records) leaves no
        ``session``/``summary`` pair that would look like a complete session."""
        if not began.is_set():
            began.set()
            sinks.header(settings.to_dict())

    received: list[int] = []
    busy = threading.Event()  # set while a pipeline step runs (see stop_on_signals)
    began, failed_to_load = threading.Event(), threading.Event()
    worker = _StepThread() if threading.current_thread() is threading.main_thread() else None
    if ready is not None:
        begin()
    try:
        with stop_on_signals(stop, received, busy):
            if loading is not None and speed is None:
                ready = take_loaded()
            elif loading is not None:
                log.info("loading models…")
                report(RunState.LOADING)
                last_status = time.perf_counter()
            for block in blocks:
                if stop.is_set() or sinks.reader_gone or (max_seconds is not None and block.start >= max_seconds):
                    break
                lag.arrived(block)
                if ready is None and not loading.done():
                    heard.append(block)
                else:
                    if ready is None:
                        ready = take_loaded()
                    emit(work(lambda: ready.feed(block)))
                    if speed is not None and lag.behind(ready.processed_until) <= settings.partials.max_lag_s:
                        emit_partials(work(ready.partials))
                if time.perf_counter() - last_status >= STATUS_EVERY_S:
                    report(state if ready is not None else RunState.LOADING)
                    last_status = time.perf_counter()
            if ready is None and not stop.is_set():
                ready = take_loaded()
            if not stop.is_set():
                emit(work(ready.flush))
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler
        received.append(signal.SIGINT)
        stop.set()
    except _Stopped:  # stopped while the models were loading or the pipeline was working
        pass
    finally:
        if worker is not None:
            worker.close(wait=not stop.is_set())  # after a stop signal, a step may still run
        interrupted = stop.is_set()
        if interrupted:
            log.info("interrupted at %.1f s of audio; the utterance in progress is dropped", processed_until())
        report(RunState.FINISHED)
        if failed_to_load.is_set():
            sinks.close(None)  # no session: the caller reports the loader's error
        else:
            begin()  # stopped while loading: the session is still reported, empty
            sinks.close(summarize(events, processed_until()))
    return SessionResult(events, interrupted, received[0] if received else None)


class _StepThread:
    """A daemon thread that runs the pipeline's steps while the main thread waits for each.

    Python runs signal handlers in the main thread only, between bytecodes: inside seconds of
    Whisper (a C call) a Ctrl-C waited until the call returned (4-11 s measured on a loaded
    2-core machine). Waiting on a future instead, the main thread acts on the signal at once;
    the abandoned step belongs to the utterance that is dropped anyway.
    """

    def __init__(self) -> None:
        self._steps: queue.Queue[tuple[Callable[[], object], Future[object]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="emostream-pipeline", daemon=True)
        self._thread.start()

    def run(self, step: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._steps.put((step, future))
        return future.result()  # the lock wait is interrupted by a signal handler that raises

    def close(self, wait: bool) -> None:
        """End the thread; ``wait`` for it (it is idle unless a signal abandoned a step), so that
        it does not exit while the interpreter shuts down around the native libraries it used."""
        self._steps.put(None)
        if wait:
            self._thread.join()

    def _serve(self) -> None:
        while (item := self._steps.get()) is not None:
            step, future = item
            try:
                future.set_result(step())
            except BaseException as exc:  # handed to the waiting main thread, raised there
                future.set_exception(exc)


class _Stopped(Exception):
    """A stop signal arrived while the session waited for its models or for a pipeline step."""
