"""``/console/api/live?group=<id>``: a WebSocket that watches one group's room.

The console enters the group's room in this process's ``LocalRooms`` as a Pushable that
is not a member: it is never in the online list, ``get_members`` or the online count, and
it hears what a connection that joined the room hears — ``members_changed`` and
``marks_changed`` batches (at most one of each per second), the room's messages
(``group_message`` …) and ``removed_from_group`` when the group is dismissed. Room events
are relayed between processes, so a member joining through another process shows too.

Besides those frames, the console gets ``{"event":"hello",…}`` once and a
``{"event":"tick","Online":N,"MessagesPerSecond":M,…}`` every second with the online count
from the presence store. The socket closes when the session ends (its UserSig expires,
logout on this process, a key change, the identifier no longer an App admin): 4001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from urllib.parse import urlsplit

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from opentim import errors
from opentim.console.auth import COOKIE, ConsoleRefused, Session, Sessions
from opentim.gateway import transport
from opentim.gateway.outbox import Wire
from opentim.gateway.rooms import LocalRooms
from opentim.online import require_online_list_group
from opentim.runtime import Runtime

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

TICK = 1.0
BACKLOG_BYTES = 4 << 20  # unread frames a console may hold before it is closed
MAX_VIEWERS = 256  # console WebSockets per process
WRITE_TIMEOUT = 10.0

CLOSE_NORMAL = 1000
CLOSE_SESSION = 4001  # no session, or it ended
CLOSE_FORBIDDEN = 4003  # a page of another site
CLOSE_GROUP = 4004  # no such group, not a live group, or dismissed
CLOSE_TOO_SLOW = 4010
CLOSE_FULL = 4029


class ConsoleViewer:
    """The console's place in a room: a ``rooms.Pushable`` that is no account's connection.

    Frames are queued and written by one writer task, so the rooms never wait on the
    browser; a browser that stops reading (``BACKLOG_BYTES`` unread) is closed.
    """

    def __init__(self, websocket: WebSocket, session: Session, group_id: str) -> None:
        self.websocket = websocket
        self.session = session
        self.group_id = group_id
        self._conn_id = "console-" + uuid.uuid4().hex
        self._outbox: deque[bytes | tuple[int, str]] = deque()
        self._outbox_bytes = 0
        self._wake = asyncio.Event()
        self.closed = False
        self.messages = 0  # message frames since the last tick

    # --- rooms.Pushable ------------------------------------------------------------------

    @property
    def sdkappid(self) -> int:
        return self.session.sdkappid

    @property
    def account(self) -> str:
        # No account can hold this name (a UserID is printable): targeted messages and
        # removals of members never match the console.
        return "\x00console"

    @property
    def platform(self) -> str:
        return "Web"

    @property
    def conn_id(self) -> str:
        return self._conn_id

    def offer(self, frame: Wire) -> None:
        self.queue(frame.data)

    def queue(self, data: bytes) -> None:
        """Queue a text frame (the page reads JSON text)."""
        if self.closed:
            return
        if self._outbox and self._outbox_bytes + len(data) > BACKLOG_BYTES:
            self.close(CLOSE_TOO_SLOW, "too slow: pushed events were not read")
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._wake.set()

    def offer_message(self, frame: Wire, priority: int) -> None:
        self.messages += 1
        self.queue(frame.data)

    async def removed_from(self, group_id: str, reason: str) -> None:
        self.queue(_encode({"event": "removed_from_group", "GroupId": group_id,
                            "Reason": reason}))
        self.close(CLOSE_GROUP, "the group was dismissed" if reason == "GroupDestroyed"
                   else "removed from the group")

    async def kicked(self, reason: str) -> None:
        self.close(CLOSE_SESSION, reason)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.append((code, reason))
            self._wake.set()

    # --- writing -------------------------------------------------------------------------

    async def write_loop(self) -> None:
        """Write queued frames until a close is written (or the browser stops reading)."""
        ws = self.websocket
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                item = self._outbox.popleft()
                async with asyncio.timeout(WRITE_TIMEOUT):
                    if isinstance(item, tuple):
                        self._outbox.clear()
                        await ws.close(item[0], item[1])
                        return
                    self._outbox_bytes -= len(item)
                    await ws.send_text(item.decode())


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return text.encode()[:120].decode(errors="ignore")


def _same_origin(websocket: WebSocket) -> bool:
    """A browser names the page that opened the socket: it must be this server's."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (the API tests, a script holding the cookie)
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


class LiveRooms:
    def __init__(self, runtime: Runtime, rooms: LocalRooms, sessions: Sessions) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.sessions = sessions
        self.viewers = 0

    async def endpoint(self, websocket: WebSocket) -> None:
        if not _same_origin(websocket):
            await websocket.close(CLOSE_FORBIDDEN)  # before accepting: HTTP 403
            return
        await websocket.accept()
        runtime = self.runtime
        group_id = websocket.query_params.get("group", "")
        try:
            session = await self.sessions.check(websocket.cookies.get(COOKIE))
            if self.viewers >= MAX_VIEWERS:
                await self._refuse(websocket, CLOSE_FULL, errors.GroupInternalError.code,
                                   f"more than {MAX_VIEWERS} console rooms are open")
                return
            group_type = await require_online_list_group(runtime.group_types,
                                                         session.sdkappid, group_id)
        except ConsoleRefused as exc:
            await self._refuse(websocket, CLOSE_SESSION, exc.code, exc.info)
            return
        except errors.TimError as exc:
            await self._refuse(websocket, CLOSE_GROUP, exc.code, exc.info)
            return
        viewer = ConsoleViewer(websocket, session, group_id)
        self.viewers += 1
        self.rooms.enter(session.sdkappid, group_id, viewer)
        try:
            viewer.queue(_encode({"event": "hello", "GroupId": group_id,
                                  "Type": group_type.value, "Online": await self._count(viewer),
                                  "Time": int(runtime.clock() * 1000)}))
            await self._run(viewer)
        finally:
            self.rooms.leave(session.sdkappid, group_id, viewer)
            self.viewers -= 1

    async def _count(self, viewer: ConsoleViewer) -> int:
        return await self.runtime.presence.count(viewer.sdkappid, viewer.group_id,
                                                 now=self.runtime.clock())

    async def _run(self, viewer: ConsoleViewer) -> None:
        writer = asyncio.create_task(viewer.write_loop())
        ticker = asyncio.create_task(self._tick(viewer))
        reader = asyncio.create_task(self._read(viewer.websocket))
        try:
            await asyncio.wait({writer, ticker, reader}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done() and not writer.cancelled() and writer.exception() is not None:
                # A write failed or timed out: the browser is gone or not reading.
                transport.abort(transport.transport_of(viewer.websocket))
        finally:
            viewer.closed = True
            for task in (ticker, reader, writer):
                task.cancel()
            for task in (ticker, reader, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self, websocket: WebSocket) -> None:
        """Frames from the browser are not commands: read (and drop) them until it leaves."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    async def _tick(self, viewer: ConsoleViewer) -> None:
        next_at = time.monotonic()
        while not viewer.closed:
            next_at += TICK
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            why = self.sessions.still_valid(viewer.session)
            if why is not None:
                viewer.queue(_encode({"event": "session_ended", "Reason": why}))
                viewer.close(CLOSE_SESSION, why)
                break
            try:
                online = await self._count(viewer)
            except Exception:  # presence unreachable for a moment: skip this tick
                log.warning("console: counting %s failed", viewer.group_id, exc_info=True)
                continue
            messages, viewer.messages = viewer.messages, 0
            viewer.queue(_encode({"event": "tick", "GroupId": viewer.group_id,
                                  "Online": online, "MessagesPerSecond": messages,
                                  "Time": int(self.runtime.clock() * 1000)}))
        # let the writer finish the close
        await asyncio.Event().wait()

    async def _refuse(self, websocket: WebSocket, close: int, code: int, info: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WRITE_TIMEOUT):
                await websocket.send_text(_encode({"event": "error", "ErrorCode": code,
                                                   "ErrorInfo": info}).decode())
                await websocket.close(close, _reason(info))
