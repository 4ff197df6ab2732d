"""The client gateway: one WebSocket per client connection, JSON frames (docs/client-protocol.md).

``GET /gateway?sdkappid=&identifier=&usersig=`` upgrades to a WebSocket authenticated
with the user's own UserSig (the identifier is the user). Every frame the client sends
counts as a heartbeat; a connection silent for ``heartbeat_timeout`` seconds is dropped
and its groups see the user leave with ``HeartbeatInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from enum import Enum
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from opentim import errors, marks
from opentim.events import ConnectionStateChanged, Origin
from opentim.gateway.rooms import LocalRooms
from opentim.online import Presence
from opentim.protocol.auth import authenticate
from opentim.runtime import Runtime

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_AUTH_FAILED = 4001
CLOSE_HEARTBEAT_TIMEOUT = 4008
CLOSE_LEASE_LOST = 4009
CLOSE_TOO_SLOW = 4010
PLATFORMS = ("Android", "iOS", "Web", "Windows", "Mac", "iPad", "Linux", "Unknown")


class MarkItem(msgspec.Struct):
    Member_Account: str
    Marks: list[int]


class Frame(msgspec.Struct):
    cmd: str
    id: Any = None  # echoed back as sent
    GroupId: str = ""
    CommandType: int = 0
    MemberList: list[MarkItem] = []


class ConnState(Enum):
    OPEN = "open"
    CLOSING = "closing"


_encode = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


class ClientConnection:
    """The server's side of one client WebSocket."""

    def __init__(self, runtime: Runtime, rooms: LocalRooms, websocket: WebSocket,
                 presence: Presence) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.websocket = websocket
        self.presence = presence
        self.state = ConnState.OPEN
        self.logged_out = False
        # Replies and pushed events come from different tasks; one writer at a time.
        self._send_lock = asyncio.Lock()
        # Pushed frames not yet written; a writer task exists only while there are some.
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    async def send(self, doc: dict[str, Any]) -> None:
        await self.send_raw(_encode(doc))

    async def send_raw(self, data: bytes) -> None:
        if self.state is not ConnState.OPEN:
            return
        async with self._send_lock:
            await self.websocket.send_bytes(data)

    def offer(self, data: bytes) -> None:
        """Queue a pushed frame. A client whose unread pushes pass ``push_backlog_bytes``
        has stopped reading: it is closed with 4010 rather than buffered without bound."""
        if self.state is not ConnState.OPEN:
            return
        if self._outbox and \
                self._outbox_bytes + len(data) > self.runtime.settings.push_backlog_bytes:
            self._too_slow()
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_outbox())

    async def _write_outbox(self) -> None:
        try:
            while self._outbox:
                data = self._outbox[0]
                await self.send_raw(data)
                self._outbox.popleft()
                self._outbox_bytes -= len(data)
        except Exception:  # the client is going away; its read loop cleans up
            log.debug("writing a push failed", exc_info=True)
            self._outbox.clear()
            self._outbox_bytes = 0
        finally:
            self._writer = None

    def _too_slow(self) -> None:
        log.info("closing connection %s of %s: %d bytes of pushes unread",
                 self.presence.conn_id, self.account, self._outbox_bytes)
        self.state = ConnState.CLOSING  # nothing more is queued or sent to it
        self.rooms.slow_clients_closed += 1
        self._outbox.clear()
        self._outbox_bytes = 0
        self._closer = asyncio.create_task(
            self.close(CLOSE_TOO_SLOW, "too slow: pushed events were not read"))

    async def run(self) -> None:
        timeout = self.runtime.settings.heartbeat_timeout
        cause = "LinkClose"
        await self._connection_state("Login", "Register")
        try:
            while not self.logged_out:
                try:
                    message = await asyncio.wait_for(self.websocket.receive(), timeout)
                except TimeoutError:
                    cause = "HeartbeatInterrupt"
                    break
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("bytes") or (message.get("text") or "").encode()
                await self.handle(raw)
        except WebSocketDisconnect:
            pass
        finally:
            self.state = ConnState.CLOSING
            await self._leave_all(cause, self.runtime.clock())
            if self.logged_out:
                await self._connection_state("Logout", "Unregister")
            else:
                await self._connection_state(
                    "Disconnect", "TimeOut" if cause == "HeartbeatInterrupt" else "LinkClose")
            if cause == "HeartbeatInterrupt" or self.logged_out:
                code = CLOSE_NORMAL if self.logged_out else CLOSE_HEARTBEAT_TIMEOUT
                with contextlib.suppress(Exception):
                    await self.websocket.close(code, "logged out" if self.logged_out
                                               else "heartbeat timeout")

    async def _leave_all(self, cause: str, now: float) -> None:
        for group_id in self.presence.groups:
            self.rooms.leave(self.presence.sdkappid, group_id, self)
        await self.runtime.online.disconnect(self.presence, cause=cause, now=now)

    @property
    def account(self) -> str:
        return self.presence.account

    async def removed_from(self, group_id: str, reason: str) -> None:
        """The member was removed (Kicked) or the group dismissed: leave it and say so."""
        if group_id in self.presence.groups:
            await self.runtime.online.quit(self.presence, group_id, now=self.runtime.clock(),
                                           cause="Quit")
        await self.send({"event": "removed_from_group", "GroupId": group_id,
                         "Reason": reason})

    async def close(self, code: int, reason: str) -> None:
        """Close from the server side (lease lost, group gone); the read loop then ends."""
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)

    async def _connection_state(self, action: str, reason: str) -> None:
        p = self.presence
        await self.runtime.events.emit(ConnectionStateChanged(
            p.sdkappid, p.account, p.conn_id, action, reason, int(self.runtime.clock() * 1000),
            p.origin,
        ))

    async def handle(self, raw: bytes) -> None:
        frame_id: Any = None
        try:
            try:
                doc = _decode_json(raw)
            except msgspec.DecodeError as exc:
                raise errors.JsonParseError(f"bad frame: {exc}") from None
            if not isinstance(doc, dict):
                raise errors.JsonParseError("a frame must be a JSON object")
            frame_id = doc.get("id")
            try:
                frame = msgspec.convert(doc, Frame, strict=True)
            except msgspec.ValidationError as exc:
                raise errors.InvalidParameter(f"invalid frame: {exc}") from None
            reply = await self.dispatch(frame)
            await self.send({"id": frame_id, "ErrorCode": 0, "ErrorInfo": "", **reply})
        except errors.TimError as exc:
            await self.send({"id": frame_id, "ErrorCode": exc.code, "ErrorInfo": exc.info})
        except Exception:
            log.exception("gateway frame failed")
            await self.send({"id": frame_id, "ErrorCode": errors.GroupInternalError.code,
                             "ErrorInfo": "internal server error, try again"})

    async def dispatch(self, frame: Frame) -> dict[str, Any]:
        online = self.runtime.online
        now = self.runtime.clock()
        if frame.cmd == "heartbeat":
            return {}
        if frame.cmd == "logout":
            await self._leave_all("Quit", now)  # applied before the reply, like every command
            self.logged_out = True  # the read loop ends after this reply
            return {}
        sdkappid = self.presence.sdkappid
        if frame.cmd == "join_group":
            await online.join(self.presence, frame.GroupId, now=now)
            self.rooms.enter(sdkappid, frame.GroupId, self)
            return {"GroupId": frame.GroupId}
        if frame.cmd == "quit_group":
            await online.quit(self.presence, frame.GroupId, now=now)
            self.rooms.leave(sdkappid, frame.GroupId, self)
            return {"GroupId": frame.GroupId}
        if frame.cmd == "modify_marks":
            return await self.modify_marks(frame, now)
        raise errors.InvalidCommand(f"unknown gateway command {frame.cmd!r}")

    async def modify_marks(self, frame: Frame, now: float) -> dict[str, Any]:
        """A connected group owner or App admin sets/deletes marks >= 1000."""
        runtime = self.runtime
        account = self.presence.account
        app = runtime.apps.get(self.presence.sdkappid)
        if app is None:
            raise errors.SdkAppIdNotFound()
        await marks.require_av_group(runtime, app.sdkappid, frame.GroupId)
        marks.require_online_list_feature(app)
        if account not in app.admins:
            group = (await runtime.store.get_groups(app.sdkappid, [frame.GroupId])).get(
                frame.GroupId)
            if group is None or group.owner != account:
                raise errors.NoPermission(
                    "only the group owner or an App admin may change marks"
                )
        result = await marks.modify_marks(
            runtime, app, frame.GroupId, frame.CommandType,
            [(m.Member_Account, m.Marks) for m in frame.MemberList],
            operator=account, now=now, allow_special=False, origin=self.presence.origin,
        )
        return {"GroupId": frame.GroupId, "CommandType": frame.CommandType,
                "MemberList": [{"Member_Account": m.account, "Marks": list(m.marks)}
                               for m in result.members]}


async def gateway_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    rooms: LocalRooms = websocket.app.state.rooms
    query = websocket.query_params
    identifier = query.get("identifier", "")
    await websocket.accept()
    try:
        app = await authenticate(
            runtime, sdkappid=query.get("sdkappid", ""), identifier=identifier,
            usersig=query.get("usersig", ""), now=runtime.clock(),
        )
    except errors.TimError as exc:
        await websocket.send_bytes(_encode(
            {"event": "error", "ErrorCode": exc.code, "ErrorInfo": exc.info}))
        await websocket.close(CLOSE_AUTH_FAILED, "authentication failed")
        return
    platform = query.get("platform", "Unknown")
    client = websocket.client
    origin = Origin(client_ip=client.host if client else "",
                    platform=platform if platform in PLATFORMS else "Unknown")
    presence = Presence(conn_id=uuid.uuid4().hex, sdkappid=app.sdkappid, account=identifier,
                        origin=origin)
    conn = ClientConnection(runtime, rooms, websocket, presence)
    await conn.send({"event": "connected", "ConnectionId": presence.conn_id,
                     "HeartbeatTimeout": runtime.settings.heartbeat_timeout})
    await conn.run()
