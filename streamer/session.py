"""A session: build the pipeline from settings, drive it over a block source, fan out to sinks.

This is the only place where the stages meet I/O: the source yields blocks (paced by a clock or
by a microphone), the pipeline turns them into events, the sinks write them. Ctrl-C ends the
loop; what was emitted stays emitted and the summary is still written.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from models.frontends.identity import same_frontend
from models.predictor import EmotionPredictor

from .config import Settings
from .errors import UserError
from .pipeline import Pipeline
from .records import AudioBlock, EmotionEvent
from .sinks.base import RunState, RuntimeStatus, Sinks
from .sinks.summary import summarize
from .speakers import make_attributor
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


def load_models(settings: Settings) -> LoadedModels:
    """Load the models the settings name (seconds: Whisper, the checkpoint and MiniLM)."""
    from models.frontends.whisper import WhisperEncoder

    asr = WhisperEncoder(settings.asr.model, settings.asr.device, settings.asr.compute_type)
    predictor = EmotionPredictor(settings.model.checkpoint, settings.model.device)
    wanted = settings.model.modalities
    if wanted not in ("both", "audio", "text"):
        raise UserError(f"model.modalities must be both, audio or text, not {wanted!r}")
    use_audio = wanted in ("both", "audio") and "audio" in predictor.frontends
    feature_encoder = None
    if use_audio and not same_frontend(predictor.frontends["audio"], asr.identity()):
        # The ASR model is not the one the checkpoint's acoustic features came from: run the
        # checkpoint's own (embedded) encoder for the features.
        feature_encoder = WhisperEncoder(None, settings.asr.device, settings.asr.compute_type)
        if not same_frontend(predictor.frontends["audio"], feature_encoder.identity()):
            raise UserError(
                f"the checkpoint's audio features came from {predictor.frontends['audio'].get('name')}, "
                "which is not available here; use --modalities text or a matching checkpoint"
            )
    text_encoder = None
    if wanted in ("both", "text") and "text" in predictor.frontends:
        from models.frontends.text import TextEncoder

        text_encoder = TextEncoder()
        if not same_frontend(predictor.frontends["text"], text_encoder.identity()):
            raise UserError("the checkpoint's text features came from another text encoder than the bundled MiniLM")
    return LoadedModels(
        transcriber=Transcriber(asr, settings.asr.decoding),
        predictor=predictor,
        text_encoder=text_encoder,
        use_audio=use_audio,
        feature_encoder=feature_encoder,
    )


def make_pipeline(models: LoadedModels, settings: Settings, channels: int) -> Pipeline:
    """A fresh stateful pipeline for one stream of ``channels`` (1 or 2) over loaded models (cheap)."""
    return Pipeline(
        channels=channels,
        segmenter=settings.vad,
        transcriber=models.transcriber,
        attributor=make_attributor(settings.speakers.resolve(channels)),
        predictor=models.predictor,
        text_encoder=models.text_encoder,
        use_audio=models.use_audio,
        context=settings.context,
        feature_encoder=models.feature_encoder,
    )


def build_pipeline(settings: Settings, channels: int) -> Pipeline:
    """Load the models the settings name and assemble the pipeline for ``channels`` (1 or 2)."""
    return make_pipeline(load_models(settings), settings, channels)


@contextmanager
def stop_on_sigint(stop: threading.Event) -> Iterator[None]:
    """While inside, the first Ctrl-C sets ``stop`` and the caller ends at its next block; a second
    one raises KeyboardInterrupt as usual.

    A KeyboardInterrupt raised wherever the main thread happens to be can be swallowed by
    library code that runs Python callbacks (about one Ctrl-C in ten was lost that way); a flag
    checked once per block cannot. Outside the main thread the default handling stays.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class SessionResult:
    events: list[EmotionEvent]
    interrupted: bool  # ended by Ctrl-C


def run_session(
    blocks: Iterable[AudioBlock],
    pipeline: Pipeline,
    sinks: Sinks,
    settings: Settings,
    state: RunState,
    speed: float | None = 1.0,
    input_health: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
) -> SessionResult:
    """Feed every block through the pipeline and every event to the sinks.

    speed: the pace the source delivers stream time at (1.0 live, None as fast as possible), to
    compute the processing lag. input_health: () -> (queue depth, dropped blocks, overflows).
    """
    events: list[EmotionEvent] = []
    stop = threading.Event()
    started = time.perf_counter()
    last_status = float("-inf")
    max_seconds = settings.input.max_seconds

    def report(run_state: RunState) -> None:
        behind = 0.0 if speed is None else (time.perf_counter() - started) * speed - pipeline.processed_until
        depth, dropped, overflows = input_health()
        sinks.status(RuntimeStatus(pipeline.processed_until, max(0.0, behind), depth, dropped, overflows, run_state))

    def emit(new: list[EmotionEvent]) -> None:
        for event in new:
            # Counted before it is written: a Ctrl-C that lands just after the JSON line was
            # written must not leave the line out of the summary.
            events.append(event)
            sinks.emit(event)

    sinks.header(settings.to_dict())
    try:
        with stop_on_sigint(stop):
            for block in blocks:
                if stop.is_set() or sinks.reader_gone or (max_seconds is not None and block.start >= max_seconds):
                    break
                emit(pipeline.feed(block))
                if time.perf_counter() - last_status >= STATUS_EVERY_S:
                    report(state)
                    last_status = time.perf_counter()
            if not stop.is_set():
                emit(pipeline.flush())
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler
        stop.set()
    finally:
        interrupted = stop.is_set()
        if interrupted:
            log.info("interrupted at %.1f s of audio; the utterance in progress is dropped", pipeline.processed_until)
        report(RunState.FINISHED)
        sinks.close(summarize(events, pipeline.processed_until))
    return SessionResult(events, interrupted)
