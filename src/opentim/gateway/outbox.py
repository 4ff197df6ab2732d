"""The frames waiting to be written to one client WebSocket, and the task that writes them.

Nothing else awaits a client's socket: replies, pushes, notices and the close are put
here and written in order by one task, which exists only while frames wait. A frame the
client leaves unwritten for ``write_timeout`` seconds (its receive window stays full)
means it stopped reading: the TCP connection is then dropped, so the connection's read
loop ends. Shared by the gateway (``endpoint.py``) and the web-SDK bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import msgspec
from starlette.websockets import WebSocket

from opentim.gateway import transport

log = logging.getLogger(__name__)

# After a connection's session ends, its socket is dropped if still open this much later
# (uvicorn waits up to 10 s for the client's close reply, then only flushes and closes).
CLOSE_GRACE = 15.0


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


class Outbox:
    def __init__(self, websocket: WebSocket, *, write_timeout: float,
                 on_dropped: Callable[[bool], None]) -> None:
        """``on_dropped(timed_out)``: the socket was dropped (the client stopped reading,
        ``timed_out``, or it is gone)."""
        self._websocket = websocket
        self._write_timeout = write_timeout
        self._on_dropped = on_dropped
        self._transport = transport.transport_of(websocket)
        self._items: deque[bytes | _Close] = deque()
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._items)

    def put(self, data: bytes) -> None:
        self._put(data)
        self.queued_bytes += len(data)

    def put_close(self, code: int, reason: str) -> None:
        self._put(_Close(code, reason))

    def clear(self) -> None:
        """Forget what waits (the frame being written, if any, still goes)."""
        self._items.clear()
        self.queued_bytes = 0

    def abort(self) -> None:
        """Stop writing and drop the socket."""
        self.clear()
        transport.abort(self._transport)

    def _put(self, item: bytes | _Close) -> None:
        self._items.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        websocket = self._websocket
        try:
            while self._items:
                item = self._items.popleft()
                async with asyncio.timeout(self._write_timeout):
                    if isinstance(item, _Close):
                        self.clear()
                        await websocket.close(item.code, item.reason)
                    else:
                        self.queued_bytes -= len(item)
                        await websocket.send_bytes(item)
        except TimeoutError:
            self.abort()
            self._on_dropped(True)
        except Exception:  # the client is gone or going: not an error
            log.debug("writing to a client connection failed", exc_info=True)
            self.abort()
            self._on_dropped(False)
        finally:
            self._writer = None

    async def drain(self) -> None:
        """Wait (bounded) for the queued frames and close to be written; the socket is
        dropped ``CLOSE_GRACE`` seconds later if the client has not closed it by then."""
        writer = self._writer
        if writer is not None:
            try:
                async with asyncio.timeout(self._write_timeout):
                    await asyncio.shield(writer)
            except TimeoutError:
                writer.cancel()
                self.abort()
        if self._transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort,
                                                  self._transport)
