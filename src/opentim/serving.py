"""How the server process listens: the uvicorn configuration built from ``Settings``.

``opentim serve`` and the test suite's live servers both build their uvicorn server here,
so every bound on what a client controls (WebSocket frame size after decompression,
compression, timeouts, connection limits, what is logged) is the same in both.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from opentim.settings import Settings


def uvicorn_config(asgi: Any, settings: Settings, *, port: int | None = None,
                   log_level: str = "info", lifespan: str = "on") -> uvicorn.Config:
    return uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port if port is None else port,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level=log_level,
        # No access log: request URLs carry UserSigs, which must not end up in log files.
        access_log=False,
        # Bounds the message *after* permessage-deflate inflates it (websockets enforces
        # max_size on the decompressed payload).
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
    )
