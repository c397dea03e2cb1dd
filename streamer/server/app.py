"""The aiohttp application: health check, the browser page, and the ``/v1/stream`` WebSocket.

Each WebSocket connection is one :class:`streamer.api.Stream` (its own stateful pipeline over
the shared models). Two tasks serve it: the reader puts audio frames into a bounded
:class:`AudioQueue`; the worker takes what is queued, runs the pipeline on it in the shared
thread pool (``ServerConfig.workers`` jobs at once, whatever the number of streams) and sends the
events. One worker per stream awaits its own jobs one after another, so a stream's audio is
processed in order; streams are interleaved job by job.

Frames sent besides the CLI's schema (``session``, ``utterance``, ``summary``, and ``partial`` when
the client asked with ``?partials=1``; skipped while audio is waiting, as the CLI skips them when behind):

- ``{"type": "status", "schema": 1, "stream_time": s, "queued_s": s, "warning": …}`` when the
  stream's queue is full (at most one a second): processing is behind and the server stops reading
  until it catches up;
- ``{"type": "error", "schema": 1, "message": …}`` before a close with a code other than 1000:
  1003 unsupported data (a text frame that is not ``{"type": "end"}``),
  1008 policy (bad query parameters), 1011 internal error, 1013 too many streams.

A client that goes away without ``end`` is dropped: its worker is cancelled and its stream freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from aiohttp import WSMsgType, web

from ..api import Recognizer, Stream
from ..errors import UserError
from ..records import JSON_SCHEMA_VERSION, SAMPLE_RATE
from ..sinks.jsonl import encode
from .audio_queue import AudioQueue

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATUS_EVERY_S = 1.0  # wall seconds between two backpressure status frames of one stream


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455, 7.4.1) the server uses."""

    NORMAL = 1000
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the server.

    workers: pipeline jobs run at once (threads sharing the models). Two on two cores: one job's
    CAM++ and text model run on one core while another job's Whisper decodes (4 clients:
    p95 1.34-1.41 s against 1.44 s with one worker, docs/benchmarks.md "Serving and batch").
    prepare_cuts_streams: while at most this many streams are open, each prepares the part a
    pending speaker-change test would cut (``Pipeline.prepare_cuts``): work that is wasted where
    the voice goes on, and that saves the wait for it where it changes (4 clients, 2 workers:
    p95 1.19-1.21 s instead of 1.34-1.41 s, at 35 % more CPU); 0 never.
    max_streams: concurrent WebSocket streams. max_queued_s: seconds of
    audio that may wait per stream before the server stops reading it. max_frame_bytes: largest
    WebSocket message accepted (aiohttp closes with 1009 above it).
    """

    workers: int = 2
    prepare_cuts_streams: int = 4
    max_streams: int = 16
    max_queued_s: float = 5.0
    max_frame_bytes: int = 1 << 20


class BadRequest(Exception):
    """A client error that ends its stream with ``code``."""

    def __init__(self, message: str, code: CloseCode) -> None:
        super().__init__(message)
        self.code = code


RECOGNIZER = web.AppKey("recognizer", Recognizer)
CONFIG = web.AppKey("config", ServerConfig)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
STREAMS = web.AppKey("streams", set)


def make_app(recognizer: Recognizer, config: ServerConfig = ServerConfig()) -> web.Application:
    """The application over loaded models (``recognizer``); its thread pool closes with it."""
    app = web.Application()
    app[RECOGNIZER] = recognizer
    app[CONFIG] = config
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="pipeline")
    app[STREAMS] = set()
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/stream", stream_socket)
    app.router.add_static("/static", STATIC_DIR)

    async def shutdown_executor(app: web.Application) -> None:
        app[EXECUTOR].shutdown(wait=True, cancel_futures=True)

    app.on_cleanup.append(shutdown_executor)
    return app


def check_address(host: str, port: int) -> None:
    """UserError now, before seconds of model loading, when ``host:port`` cannot be listened on."""
    try:
        socket.create_server((host, port)).close()
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(recognizer: Recognizer, host: str, port: int, config: ServerConfig = ServerConfig()) -> None:
    """Serve until Ctrl-C."""
    log.info("serving on http://%s:%d (page /, WebSocket /v1/stream)", host, port)
    try:
        web.run_app(make_app(recognizer, config), host=host, port=port, print=None,
                    access_log=None, handle_signals=True)
    except OSError as err:  # taken meanwhile (check_address passed)
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "streams": len(request.app[STREAMS])})


@dataclass(frozen=True)
class StreamParams:
    """A stream's query parameters: ``?sample_rate=16000&channels=1&partials=0``."""

    sample_rate: int  # Hz
    channels: int  # 1, or 2 = one speaker per channel, interleaved
    partials: bool  # send interim ``partial`` records while the stream keeps up

    @property
    def bytes_per_s(self) -> int:
        return self.sample_rate * 2 * self.channels


def parse_params(query: dict[str, str]) -> StreamParams:
    """The query parameters; BadRequest (1008) when one is unknown or invalid."""
    unknown = set(query) - {"sample_rate", "channels", "partials"}
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown))}", CloseCode.POLICY_VIOLATION)
    try:
        rate = int(query.get("sample_rate", SAMPLE_RATE))
        channels = int(query.get("channels", 1))
    except ValueError:
        raise BadRequest("sample_rate and channels must be integers", CloseCode.POLICY_VIOLATION) from None
    if channels not in (1, 2):
        raise BadRequest(f"channels must be 1 or 2, not {channels}", CloseCode.POLICY_VIOLATION)
    if not 8000 <= rate <= 192000:
        raise BadRequest(f"sample_rate must be 8000..192000 Hz, not {rate}", CloseCode.POLICY_VIOLATION)
    if query.get("partials", "0") not in ("0", "1"):
        raise BadRequest("partials must be 0 or 1", CloseCode.POLICY_VIOLATION)
    return StreamParams(rate, channels, query.get("partials") == "1")


async def send(ws: web.WebSocketResponse, record: dict) -> None:
    """One JSON object as one text frame (the JSON lines encoder, without the newline)."""
    await ws.send_str(encode(record))


async def fail(ws: web.WebSocketResponse, message: str, code: CloseCode) -> None:
    """An error frame, then a close with ``code``; quiet if the client is already gone."""
    if ws.closed:
        return
    try:
        await send(ws, {"type": "error", "schema": JSON_SCHEMA_VERSION, "message": message})
        await ws.close(code=code, message=message[:120].encode())
    except ConnectionError:
        pass


async def stream_socket(request: web.Request) -> web.WebSocketResponse:
    """One stream: a reader task queues the audio, a worker task scores it (module docstring)."""
    app = request.app
    config = app[CONFIG]
    ws = web.WebSocketResponse(max_msg_size=config.max_frame_bytes)
    await ws.prepare(request)
    if len(app[STREAMS]) >= config.max_streams:
        await fail(ws, f"the server is at its limit of {config.max_streams} streams", CloseCode.TRY_AGAIN_LATER)
        return ws
    try:
        params = parse_params(request.query)
    except BadRequest as err:
        await fail(ws, str(err), err.code)
        return ws
    stream = app[RECOGNIZER].stream(params.channels, params.sample_rate)
    queue = AudioQueue(max_bytes=int(config.max_queued_s * params.bytes_per_s))
    reader = asyncio.create_task(read_audio(ws, queue, stream, params.bytes_per_s))
    worker = asyncio.create_task(run_stream(ws, stream, queue, app[EXECUTOR], params.partials,
                                            lambda: len(app[STREAMS]) <= config.prepare_cuts_streams))
    app[STREAMS].add(worker)
    log.info("stream from %s: %s", request.remote, params)
    try:
        await asyncio.wait({reader, worker}, return_when=asyncio.FIRST_COMPLETED)
        if not worker.done() and not queue.ended:
            worker.cancel()  # the reader stopped without an end: a bad frame, or the client left
        await asyncio.wait({worker})
        if not worker.cancelled():
            code, message = worker.result()
            await (ws.close(code=code, message=message.encode()) if code is CloseCode.NORMAL
                   else fail(ws, message, code))
        elif isinstance(reader.exception(), BadRequest):
            await fail(ws, str(reader.exception()), reader.exception().code)
        else:
            log.info("stream from %s dropped at %.1f s of audio: the client left", request.remote, stream.stream_time)
    finally:
        reader.cancel()
        worker.cancel()
        app[STREAMS].discard(worker)
    return ws


async def read_audio(ws: web.WebSocketResponse, queue: AudioQueue, stream: Stream, bytes_per_s: int) -> None:
    """Queue binary frames until ``{"type": "end"}`` or the client leaves; BadRequest on a bad frame.

    While the queue is full, a status frame says so at most every STATUS_EVERY_S of wall time.
    """
    last_status = float("-inf")
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            full = queue.queued_bytes + len(msg.data) > queue.max_bytes
            if full and time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                await send(ws, {
                    "type": "status", "schema": JSON_SCHEMA_VERSION,
                    "stream_time": round(stream.stream_time, 3),
                    "queued_s": round((queue.queued_bytes + len(msg.data)) / bytes_per_s, 3),
                    "warning": "processing is behind; reading paused until it catches up",
                })
            await queue.put(msg.data)
        elif msg.type == WSMsgType.TEXT:
            if not is_end(msg.data):
                raise BadRequest('text frames must be {"type": "end"}; audio goes in binary frames',
                                 CloseCode.UNSUPPORTED_DATA)
            await queue.end()
            return
        elif msg.type == WSMsgType.ERROR:
            log.info("stream connection error: %s", ws.exception())
            return


def is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


async def run_stream(ws: web.WebSocketResponse, stream: Stream, queue: AudioQueue,
                     executor: ThreadPoolExecutor, partials: bool = False,
                     prepare_cuts: Callable[[], bool] = lambda: True) -> tuple[CloseCode, str]:
    """Score the stream's audio in order and send its records up to the summary.

    partials: after each job, poll interim results when no audio is waiting (the stream keeps up).
    prepare_cuts: asked before each job, whether the pipeline prepares speaker-change cuts ahead
    (``ServerConfig.prepare_cuts_streams``); the events are the same either way.
    Returns the close code and reason: 1000 after the summary, 1011 when the pipeline failed.
    """
    loop = asyncio.get_running_loop()
    try:
        await send(ws, stream.session_record())
        ended = False
        while not ended:
            data, ended = await queue.take()
            stream.pipeline.prepare_cuts = prepare_cuts()
            events = await loop.run_in_executor(executor, stream.feed_pcm16, data) if data else []
            if ended:
                events += await loop.run_in_executor(executor, stream.close)
            if partials and not ended and not queue.queued_bytes:
                events += await loop.run_in_executor(executor, stream.partials)
            for event in events:
                await send(ws, event.to_dict())
        await send(ws, stream.summary().to_dict())
    except ConnectionError:
        log.info("client went away before its summary")
    except Exception as err:  # one stream's failure must not end the others: log it whole, close 1011
        log.exception("stream failed")
        return CloseCode.INTERNAL_ERROR, f"internal error: {type(err).__name__}"
    return CloseCode.NORMAL, "end of stream"
