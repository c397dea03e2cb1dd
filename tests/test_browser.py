"""The page at ``/`` in a real headless Chromium: the microphone (a fake device playing the example
dialogue) streams to the server, and the results appear on the page.

Chromium is the system's (Debian ``chromium``), driven by playwright through ``executable_path``;
nothing is downloaded. Skipped, with the reason, where playwright or a Chromium is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator

import pytest

from streamer.api import Recognizer

from .conftest import EXAMPLES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def shipped_labels() -> tuple[str, ...]:
    """The labels of the shipped checkpoint (what the page draws a bar for)."""
    from models.checkpoint import load_checkpoint

    return load_checkpoint(None)[0].label_set.labels


def chromium() -> str:
    """Path of an installed Chromium; skips the test when there is none."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server_url(recognizer: Recognizer) -> Iterator[str]:
    """The real app on a free local port, served from a background thread's event loop."""
    from aiohttp import web

    from streamer.server import make_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(recognizer))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30), "the test server did not start"
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def browser(server_url: str):  # needs the server: closed before it, so no stream is left open
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    executable = chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={EXAMPLES / 'dialogue.wav'}"],
            env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")},
        )
        yield browser
        browser.close()


def test_page_loads(browser, server_url: str) -> None:
    page = browser.new_page()
    page.goto(server_url + "/")
    assert page.title() == "emostream"
    assert page.locator("#start").is_enabled() and page.locator("#stop").is_disabled()
    page.close()


def test_the_microphone_streams_and_results_appear(browser, server_url: str) -> None:
    """Start, hear the fake microphone's dialogue (it loops, from wherever it happens to be), see
    utterances with transcripts and emotion bars, stop, see the summary."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(server_url + "/")
        page.click("#start")
        page.wait_for_function("document.querySelectorAll('.utterance').length >= 3", timeout=90_000)
        rows = page.locator(".utterance")
        assert {rows.nth(i).locator(".speaker").inner_text() for i in range(3)} <= {"A", "B"}
        words = [len(rows.nth(i).locator(".text").inner_text().split()) for i in range(3)]
        assert max(words) >= 5, words  # transcripts, not empty or one-word ones
        assert rows.first.locator(".bar").count() == len(shipped_labels())  # one bar per label
        assert page.locator("#timeline .span").count() >= 3
        assert "Listening" in page.locator("#status").inner_text()
        page.click("#stop")
        page.wait_for_function("document.getElementById('status').textContent === 'Finished.'", timeout=60_000)
        assert page.locator("#summary .speaker-summary").count() >= 1
        assert page.locator(".partial").count() == 0  # every interim row was replaced or dropped
        assert not errors, errors
    finally:
        page.close()
