"""``emostream serve``: one set of loaded models, many concurrent WebSocket streams, a browser page.

- ``GET /healthz``: 200 and ``{"status": "ok", "streams": N}`` (the models load before the port opens).
- ``GET /``: a page that streams the microphone and shows the results live (``static/``).
- ``WebSocket /v1/stream?sample_rate=16000&channels=1``: binary frames of signed 16-bit
  little-endian PCM (channels interleaved, any frame size), then the text frame
  ``{"type": "end"}``. The server answers with text frames, one JSON object each, in the CLI's
  schema (``session``, ``utterance`` …, ``summary``) and closes with 1000. See :mod:`.app`.
"""

from .app import ServerConfig, check_address, make_app, serve

__all__ = ["ServerConfig", "check_address", "make_app", "serve"]
