"""Reaching a client's connection underneath ASGI: to drop it at once when it has stopped
reading, and to write pushed frames straight to its socket.

Dropping. ASGI has no way to do this: ``websocket.close`` waits (in uvicorn) until the socket's
write buffer has room, which never happens for a client that stopped reading, and the
transport's own ``close()`` first flushes that buffer, so the descriptor would stay open
for as long as the client keeps its receive window shut. uvicorn's ``receive`` callable is
a method of its protocol object, which holds the asyncio transport; ``abort()`` on that
transport discards the buffer and closes the socket. Under any other server the lookup
finds nothing, and a stuck connection then ends at its next frame or heartbeat timeout.

Writing (``DirectWrite``). A message to a room of 10,000 goes to 10,000 sockets. Through
ASGI each costs a coroutine, Starlette's and uvicorn's send wrappers and websockets'
framing of the same bytes again; measured by bench/run's ``messages`` phase
(docs/performance.md), that was most of a delivery's cost. The frame is instead built
once (``binary_frame``) and written with ``transport.write``, exactly what uvicorn's own
send ends in, whenever the connection can take it at once: uvicorn's websockets (sans-I/O)
protocol is open, has not sent its close, is not paused by the transport's flow control,
and negotiated no extension (permessage-deflate would have to compress per connection).
Otherwise the frame goes the ASGI way, through the connection's outbox, which also waits
out the pause.
uvicorn is pinned below 0.55 in pyproject.toml; tests/test_gateway_direct_write.py fails if
the default server stops being the protocol this reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State


def _protocol_of(websocket: Any) -> object:
    receive = getattr(websocket, "_receive", None)
    return getattr(receive, "__self__", None)


def transport_of(websocket: Any) -> asyncio.BaseTransport | None:
    """The connection's transport. Checked by what it can do, not by class: uvloop's
    transports (what ``opentim serve`` runs on) do not derive from asyncio's."""
    transport = getattr(_protocol_of(websocket), "transport", None)
    if all(callable(getattr(transport, name, None))
           for name in ("abort", "is_closing", "get_extra_info")):
        return cast("asyncio.BaseTransport", transport)
    return None


def binary_frame(data: bytes) -> bytes:
    """``data`` as one unmasked binary WebSocket frame (server to client)."""
    return Frame(Opcode.BINARY, data).serialize(mask=False)


class DirectWrite:
    """Writes frames built by ``binary_frame`` straight to one connection's socket."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    @classmethod
    def of(cls, websocket: Any) -> DirectWrite | None:
        """None when the connection is not served by uvicorn's websockets protocol."""
        protocol = _protocol_of(websocket)
        return cls(protocol) if isinstance(protocol, WebSocketsSansIOProtocol) else None

    def write(self, framed: bytes) -> bool:
        """Write the frame now if the connection can take it (see the module's text);
        False: nothing was written."""
        p = self._protocol
        if (p.close_sent or p.disconnected or not p.writable.is_set()
                or p.conn.state is not State.OPEN or p.conn.extensions
                or self._transport.is_closing()):
            return False
        self._transport.write(framed)
        return True


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
