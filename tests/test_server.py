"""``emostream serve``'s protocol, against the real app and models (aiohttp's test server)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamer.api import Recognizer
from streamer.server import ServerConfig, make_app

from .conftest import EXAMPLES, run_emostream

pytestmark = pytest.mark.slow

END = json.dumps({"type": "end"})


@pytest.fixture(scope="module")
def example_bytes() -> bytes:
    """examples/dialogue.wav as 16 kHz mono s16le."""
    from streamer.sources import open_file

    audio = np.concatenate([b.samples[:, 0] for b in open_file(EXAMPLES / "dialogue.wav").blocks()])
    return np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def reference(recognizer: Recognizer) -> list[dict]:
    """The example's utterance lines from the API (= replay --fast), without latency_ms."""
    return [strip(e.to_dict()) for e in recognizer.replay(EXAMPLES / "dialogue.wav")]


def strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "latency_ms"}


def serve(recognizer: Recognizer, test: Callable[[TestClient], Awaitable[None]], **config) -> None:
    """Run ``test(client)`` against a fresh app over the shared models."""

    async def main() -> None:
        async with TestClient(TestServer(make_app(recognizer, ServerConfig(**config)))) as client:
            await test(client)

    asyncio.run(main())


async def stream(client: TestClient, data: bytes, frame: int = 3201, query: str = "") -> tuple[list[dict], int]:
    """Send ``data`` in ``frame``-byte binary frames, then the end; every record and the close code."""
    async with client.ws_connect("/v1/stream" + query) as ws:
        for offset in range(0, len(data), frame):
            await ws.send_bytes(data[offset: offset + frame])
        await ws.send_str(END)
        records = [json.loads(msg.data) async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]
    return records, ws.close_code


async def refused(client: TestClient, query: str = "", text: str | None = None) -> tuple[list[dict], int]:
    """Connect (and send ``text``): the records received and the close code."""
    async with client.ws_connect("/v1/stream" + query) as ws:
        if text is not None:
            await ws.send_str(text)
        records = [json.loads(msg.data) async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]
    return records, ws.close_code


def test_health_and_page(recognizer: Recognizer) -> None:
    async def test(client: TestClient) -> None:
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json()) == {"status": "ok", "streams": 0}
        page = await client.get("/")
        assert page.status == 200 and "getUserMedia" not in await page.text()  # the script is separate
        script = await client.get("/static/app.js")
        assert script.status == 200 and "getUserMedia" in await script.text()
        assert (await client.get("/static/pcm-worklet.js")).status == 200

    serve(recognizer, test)


def test_a_stream_gets_the_cli_schema_in_order(recognizer: Recognizer, example_bytes: bytes, reference) -> None:
    """Odd frame sizes (samples split between frames); the events are replay --fast's exactly."""

    async def test(client: TestClient) -> None:
        records, code = await stream(client, example_bytes, frame=3201)
        assert code == 1000
        assert records[0]["type"] == "session" and records[0]["settings"]["vad"]["aggressiveness"] == 3
        assert records[-1]["type"] == "summary" and records[-1]["utterances"] == len(reference)
        assert [strip(r) for r in records[1:-1]] == reference

    serve(recognizer, test, max_queued_s=60)  # the whole file may wait: no status frames


def test_stereo_and_other_rates(recognizer: Recognizer, example_bytes: bytes) -> None:
    """channels=2 (A left, B right) at 8 kHz: speakers follow the channels."""
    import soxr

    mono = np.frombuffer(example_bytes, "<i2").astype(np.float32) / 32768
    half = len(mono) // 2
    stereo = np.zeros((len(mono), 2), np.float32)
    stereo[:half, 0], stereo[half:, 1] = mono[:half], mono[half:]
    data = (np.clip(soxr.resample(stereo, 16000, 8000), -1, 1) * 32767).astype("<i2").tobytes()

    async def test(client: TestClient) -> None:
        records, code = await stream(client, data, frame=4000, query="?sample_rate=8000&channels=2")
        assert code == 1000
        events = [r for r in records if r["type"] == "utterance"]
        assert events and {(e["channel"], e["speaker"]) for e in events} == {(0, "A"), (1, "B")}

    serve(recognizer, test)


@pytest.mark.parametrize("query, text, code, message", [
    ("?sample_rate=abc", None, 1008, "integers"),
    ("?channels=3", None, 1008, "channels"),
    ("?rate=16000", None, 1008, "unknown parameter"),
    ("", "hello", 1003, "text frames"),
    ("", json.dumps({"type": "start"}), 1003, "text frames"),
])
def test_bad_requests_get_an_error_and_a_close_code(recognizer: Recognizer, query, text, code, message) -> None:
    async def test(client: TestClient) -> None:
        records, close_code = await refused(client, query, text)
        assert close_code == code
        assert records[-1]["type"] == "error" and message in records[-1]["message"]

    serve(recognizer, test)


def test_one_bad_client_does_not_disturb_another(recognizer: Recognizer, example_bytes: bytes, reference) -> None:
    async def test(client: TestClient) -> None:
        good = asyncio.create_task(stream(client, example_bytes, frame=16000))
        bad = await refused(client, "", "not json")
        (records, code) = await good
        assert bad[1] == 1003
        assert code == 1000 and [strip(r) for r in records[1:-1]] == reference

    serve(recognizer, test, max_queued_s=60)


def test_a_vanished_client_is_cleaned_up(recognizer: Recognizer, example_bytes: bytes) -> None:
    async def test(client: TestClient) -> None:
        ws = await client.ws_connect("/v1/stream")
        await ws.send_bytes(example_bytes[: 16000 * 2 * 4])  # 4 s, then the connection drops
        await ws.receive()  # the session line: the stream is running
        assert (await (await client.get("/healthz")).json())["streams"] == 1
        ws._response.connection.transport.abort()  # no close frame: the client just disappears
        for _ in range(100):
            if (await (await client.get("/healthz")).json())["streams"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await (await client.get("/healthz")).json())["streams"] == 0

    serve(recognizer, test)


def test_backpressure_is_reported_and_the_stream_completes(recognizer: Recognizer, example_bytes: bytes, reference) -> None:
    """A client sending faster than the pipeline runs is told, slowed down, and still served."""

    async def test(client: TestClient) -> None:
        records, code = await stream(client, example_bytes, frame=8000)
        statuses = [r for r in records if r["type"] == "status"]
        assert statuses and statuses[0]["queued_s"] > 0.5 and "behind" in statuses[0]["warning"]
        assert code == 1000
        assert [strip(r) for r in records if r["type"] == "utterance"] == reference

    serve(recognizer, test, max_queued_s=0.5)


def test_streams_beyond_the_limit_are_refused(recognizer: Recognizer) -> None:
    async def test(client: TestClient) -> None:
        async with client.ws_connect("/v1/stream") as first:
            await first.receive()  # session: the first stream holds the only place
            records, code = await refused(client)
            assert code == 1013 and "limit" in records[-1]["message"]
            await first.send_str(END)

    serve(recognizer, test, max_streams=1)


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers"),
    (["--port", "http"], "--port"),
    (["--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}"),
])
def test_serve_flags_are_checked_before_loading(args: list[str], message: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = str(taken.getsockname()[1])
        done = run_emostream("serve", *(a.format(busy=busy) for a in args), timeout=60)
    message = message.format(busy=busy)
    assert done.returncode == 2
    assert done.stderr.startswith("emostream: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_partials_on_request(recognizer: Recognizer, example_bytes: bytes, reference) -> None:
    """?partials=1 at twice real time: interim records in the CLI's schema, each superseded by the
    utterance with its id; the utterances themselves are unchanged."""

    async def test(client: TestClient) -> None:
        async with client.ws_connect("/v1/stream?partials=1") as ws:
            for offset in range(0, len(example_bytes), 3200):  # 100 ms frames, every 50 ms
                await ws.send_bytes(example_bytes[offset: offset + 3200])
                await asyncio.sleep(0.05)
            await ws.send_str(END)
            records = [json.loads(msg.data) async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]
        assert ws.close_code == 1000
        partials = [r for r in records if r["type"] == "partial"]
        decided = {r["id"]: i for i, r in enumerate(records) if r["type"] == "utterance"}
        assert partials and set(partials[0]) == set(reference[0]) | {"latency_ms"}
        assert all(records.index(p) < decided.get(p["id"], len(records)) for p in partials)
        assert [strip(r) for r in records if r["type"] == "utterance"] == reference

    serve(recognizer, test)


def test_oversized_frames_are_refused(recognizer: Recognizer) -> None:
    async def test(client: TestClient) -> None:
        async with client.ws_connect("/v1/stream") as ws:
            await ws.receive()  # session
            await ws.send_bytes(bytes(2 * 1024 * 1024))  # 2 MiB: over max_frame_bytes (1 MiB)
            async for _ in ws:
                pass
        assert ws.close_code == 1009
        for _ in range(50):
            if (await (await client.get("/healthz")).json())["streams"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await (await client.get("/healthz")).json())["streams"] == 0

    serve(recognizer, test)
