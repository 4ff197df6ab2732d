"""The frames waiting to be written to one client WebSocket, and the task that writes them.

Nothing else awaits a client's socket: replies, pushes, notices and the close are put
here. A frame put while nothing waits and the socket can take it is written at once,
straight to the socket (``transport.DirectWrite``: no task, no ASGI send, framed once per
room); otherwise frames are written in order by one task, which exists only while frames
wait.

Messages (``put_later``) wait ``Coalescer.delay`` first, so that the messages a busy room
gets in that time reach each connection in one write: the cost of a delivery is mostly
the connection's system call, not its bytes (bench ``messages`` phase: docs/performance.md).
Any other frame put meanwhile is written after them, so a connection's frames keep the
order they were put in. A frame the
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


class Wire:
    """A frame to push: its JSON, and the WebSocket frame carrying it, built the first
    time a connection writes it directly and then shared by every connection it goes to."""

    __slots__ = ("_framed", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._framed: bytes | None = None

    def framed(self) -> bytes:
        if self._framed is None:
            self._framed = transport.binary_frame(self.data)
        return self._framed


class WriteCounts:
    """Frames written straight to a socket and frames that went through an outbox's queue,
    for a process's connections (/metrics: opentim_gateway_frames_total)."""

    __slots__ = ("direct", "queued")

    def __init__(self) -> None:
        self.direct = 0
        self.queued = 0


class Coalescer:
    """The outboxes holding messages not yet written, written together ``delay`` seconds
    after the first (0: at the end of the current pass of the event loop)."""

    __slots__ = ("_dirty", "_handle", "delay")

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._dirty: list[Outbox] = []
        self._handle: asyncio.Handle | None = None

    def add(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.delay, self._flush) if self.delay > 0 \
                else loop.call_soon(self._flush)

    def _flush(self) -> None:
        dirty, self._dirty, self._handle = self._dirty, [], None
        for outbox in dirty:
            outbox.flush_pending()


class Outbox:
    def __init__(self, websocket: WebSocket, *, write_timeout: float,
                 on_dropped: Callable[[bool], None],
                 counts: WriteCounts | None = None,
                 coalescer: Coalescer | None = None) -> None:
        """``on_dropped(timed_out)``: the socket was dropped (the client stopped reading,
        ``timed_out``, or it is gone)."""
        self._websocket = websocket
        self._write_timeout = write_timeout
        self._on_dropped = on_dropped
        self._transport = transport.transport_of(websocket)
        self._direct = transport.DirectWrite.of(websocket)
        self._counts = counts if counts is not None else WriteCounts()
        self._coalescer = coalescer
        self._pending: list[Wire] = []  # messages waiting for the coalescer
        self._items: deque[bytes | _Close] = deque()
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._items)

    def put_later(self, frame: Wire) -> None:
        """Put a message frame, written with the others the coalescer collects."""
        if self._coalescer is None:
            self.put(frame)
            return
        if not self._pending:
            self._coalescer.add(self)
        self._pending.append(frame)

    def flush_pending(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._send(pending)

    def put(self, frame: bytes | Wire) -> None:
        self.flush_pending()  # the messages put before it go first
        self._send([frame if isinstance(frame, Wire) else Wire(frame)])

    def _send(self, wires: list[Wire]) -> None:
        """Straight to the socket, in one write, if nothing is in flight (a queued frame
        must not be overtaken) and the socket takes it now; else queued for the writer."""
        if self._writer is None and self._direct is not None:
            framed = wires[0].framed() if len(wires) == 1 else \
                b"".join([w.framed() for w in wires])
            if self._direct.write(framed):
                self._counts.direct += len(wires)
                return
        for wire in wires:
            self._counts.queued += 1
            self._put(wire.data)
            self.queued_bytes += len(wire.data)

    def put_close(self, code: int, reason: str) -> None:
        self.flush_pending()
        self._put(_Close(code, reason))

    def clear(self) -> None:
        """Forget what waits (the frame being written, if any, still goes)."""
        self._pending = []
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
