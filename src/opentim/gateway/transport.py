"""Dropping a client's TCP connection at once, when it has stopped reading.

ASGI has no way to do this: ``websocket.close`` waits (in uvicorn) until the socket's
write buffer has room, which never happens for a client that stopped reading, and the
transport's own ``close()`` first flushes that buffer, so the descriptor would stay open
for as long as the client keeps its receive window shut. uvicorn's ``receive`` callable is
a method of its protocol object, which holds the asyncio transport; ``abort()`` on that
transport discards the buffer and closes the socket. Under any other server the lookup
finds nothing, and a stuck connection then ends at its next frame or heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any


def transport_of(websocket: Any) -> asyncio.BaseTransport | None:
    receive = getattr(websocket, "_receive", None)
    owner = getattr(receive, "__self__", None)
    transport = getattr(owner, "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


def abort(transport: asyncio.BaseTransport | None) -> None:
    """Drop the connection now. Closing a socket that still has unsent data leaves the
    kernel sending it (and a FIN) for as long as the peer keeps its window shut; with
    SO_LINGER 0 the close resets the connection and frees the queue at once."""
    if transport is None or (transport.is_closing() and not _has_unsent(transport)):
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if hasattr(transport, "abort"):
        transport.abort()


def _has_unsent(transport: asyncio.BaseTransport) -> bool:
    size = getattr(transport, "get_write_buffer_size", None)
    return bool(size and size())
