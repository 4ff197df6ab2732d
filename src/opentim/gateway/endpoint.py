"""The client gateway: one WebSocket per client connection, JSON frames (docs/client-protocol.md).

``GET /gateway?sdkappid=&identifier=&usersig=`` upgrades to a WebSocket authenticated
with the user's own UserSig (the identifier is the user). Every frame the client sends
counts as a heartbeat; a connection silent for ``heartbeat_timeout`` seconds is dropped
and its groups see the user leave with ``HeartbeatInterrupt``.

Nothing waits on a client's socket except that connection's own writer task: replies,
pushes, notices and closes are queued (``_outbox``) and written in order. A write that
cannot complete within ``Settings.gateway_write_timeout`` means the client stopped reading; its TCP
connection is then dropped, so its read loop ends and it leaves every online list.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from enum import Enum
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from opentim import errors
from opentim.domain import messages as message_rules
from opentim.events import ConnectionStateChanged, Origin
from opentim.gateway import commands, frames, transport
from opentim.gateway.outbox import Outbox, Wire
from opentim.gateway.rooms import LocalRooms
from opentim.online import Presence
from opentim.protocol.auth import authenticate_user
from opentim.protocol.rest import unreachable
from opentim.runtime import Runtime

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_AUTH_FAILED = 4001
CLOSE_HEARTBEAT_TIMEOUT = 4008
CLOSE_LEASE_LOST = 4009
CLOSE_TOO_SLOW = 4010
CLOSE_ACCOUNT_DELETED = 4011
CLOSE_LOGGED_IN_ELSEWHERE = 4012
CLOSE_KICKED = 4013
# event "kicked": Reason -> close code and reason text
KICKS = {"AccountDeleted": (CLOSE_ACCOUNT_DELETED, "account deleted"),
         "MultiInstance": (CLOSE_LOGGED_IN_ELSEWHERE, "logged in elsewhere"),
         "Kicked": (CLOSE_KICKED, "kicked by the app's server")}
PLATFORMS = ("Android", "iOS", "Web", "Windows", "Mac", "iPad", "Linux", "Unknown")

# Re-exported: the frame shapes live in frames.py.
Frame = frames.Frame
MarkItem = frames.MarkItem


class ConnState(Enum):
    # Indexed for its account (so a newer one over the limit can kick it) but not yet
    # registered in presence: it gets no push before its `connected` frame.
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"  # nothing more is handled or queued, except the close itself


_encode = msgspec.json.Encoder().encode


class ClientConnection:
    """The server's side of one client WebSocket."""

    def __init__(self, runtime: Runtime, rooms: LocalRooms, websocket: WebSocket,
                 presence: Presence) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.websocket = websocket
        self.presence = presence
        self.state = ConnState.OPENING
        self.logged_out = False
        # Frames not yet written; a frame may wait gateway_write_timeout seconds for the
        # client to make room in its receive window.
        self._outbox = Outbox(websocket, write_timeout=runtime.settings.gateway_write_timeout,
                              on_dropped=self._dropped, counts=rooms.write_counts,
                              coalescer=rooms.coalescer)
        self._reported = False  # the end of the connection was announced (webhooks)
        # Leaving every group may be started by a kick and by the read loop's end at once.
        self._finishing = asyncio.Lock()

    # --- what the rooms see -------------------------------------------------------------

    @property
    def sdkappid(self) -> int:
        return self.presence.sdkappid

    @property
    def account(self) -> str:
        return self.presence.account

    @property
    def platform(self) -> str:
        return self.presence.origin.platform

    @property
    def conn_id(self) -> str:
        return self.presence.conn_id

    def send(self, doc: dict[str, Any]) -> None:
        self.offer(Wire(_encode(doc)))

    def offer(self, frame: Wire) -> None:
        """Queue a frame."""
        if self._admits(frame):
            self._outbox.put(frame)

    def offer_message(self, frame: Wire, priority: int) -> None:
        """Queue a message frame (written with the others of the coalescer's interval),
        or shed it when this client has fallen behind."""
        if message_rules.sheds(priority, self._outbox.queued_bytes,
                               self.runtime.settings.push_backlog_bytes):
            self.rooms.messages_shed += 1
            return
        if self._admits(frame):
            self._outbox.put_later(frame)

    def _admits(self, frame: Wire) -> bool:
        """Whether the frame may be queued. A client with more than ``push_backlog_bytes``
        queued and not yet written has stopped reading: it is closed with 4010 rather than
        buffered without bound."""
        if self.state is not ConnState.OPEN:
            return False
        if self._outbox and self._outbox.queued_bytes + len(frame.data) > \
                self.runtime.settings.push_backlog_bytes:
            self._too_slow()
            return False
        return True

    def opened(self) -> None:
        """Registered in presence: the `connected` frame goes out (the first one), and
        pushes are taken from now on. Nothing, if it was kicked or closed meanwhile."""
        if self.state is ConnState.OPENING:
            self.state = ConnState.OPEN
            self.send({"event": "connected", "ConnectionId": self.presence.conn_id,
                       "HeartbeatTimeout": self.runtime.settings.heartbeat_timeout})

    def close(self, code: int, reason: str) -> None:
        """Close from the server side (lease lost, too slow, kicked); the read loop ends
        once the close is written, or the write times out and the socket is dropped."""
        if self.state is not ConnState.CLOSING:
            self.state = ConnState.CLOSING
            self._outbox.put_close(code, reason)

    async def removed_from(self, group_id: str, reason: str) -> None:
        """The member was removed (Kicked) or the group dismissed: leave it and say so."""
        if group_id in self.presence.groups:
            await self.runtime.online.quit(self.presence, group_id, now=self.runtime.clock(),
                                           cause="Quit")
        self.send({"event": "removed_from_group", "GroupId": group_id, "Reason": reason})

    async def kicked(self, reason: str) -> None:
        """The account was deleted or kicked, or logged in once too often on this
        platform: leave every online list now, then tell the client and close."""
        if self.state is ConnState.CLOSING:
            return
        code, text = KICKS[reason]
        self.state = ConnState.CLOSING  # no frame of it is handled from now on
        self._outbox.put(_encode({"event": "kicked", "Reason": reason}))
        self._outbox.put_close(code, text)
        await self._finish("LinkClose")
        # Offline for query_online_status now, not once the client answered the close.
        p = self.presence
        await self.runtime.presence.remove_connection(p.sdkappid, p.account, p.conn_id)

    # --- writing ------------------------------------------------------------------------

    def _dropped(self, timed_out: bool) -> None:
        """The outbox dropped the socket: its read loop now sees the disconnect."""
        self.state = ConnState.CLOSING
        if timed_out:
            log.info("dropped connection %s of %s: a frame waited %.0f s for the client "
                     "to read", self.presence.conn_id, self.account,
                     self.runtime.settings.gateway_write_timeout)
            self.rooms.slow_clients_closed += 1

    def _too_slow(self) -> None:
        log.info("closing connection %s of %s: %d bytes of frames unread",
                 self.presence.conn_id, self.account, self._outbox.queued_bytes)
        self.rooms.slow_clients_closed += 1
        self._outbox.clear()  # the close goes out next (or the write in progress times out)
        self.close(CLOSE_TOO_SLOW, "too slow: pushed events were not read")

    # --- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        timeout = self.runtime.settings.heartbeat_timeout
        cause = "LinkClose"
        await self._connection_state("Login", "Register")
        try:
            while self.state is ConnState.OPEN and not self.logged_out:
                try:
                    async with asyncio.timeout(timeout):
                        message = await self.websocket.receive()
                except TimeoutError:
                    cause = "HeartbeatInterrupt"
                    break
                if message["type"] == "websocket.disconnect" or \
                        self.state is not ConnState.OPEN:
                    break
                raw = message.get("bytes") or (message.get("text") or "").encode()
                await self.handle(raw)
        except WebSocketDisconnect:
            pass
        finally:
            was_open = self.state is ConnState.OPEN
            self.state = ConnState.CLOSING
            try:
                # A command in flight when the connection was kicked may have joined a
                # group after the kick left them all: leave again (it is idempotent).
                await self._finish("Quit" if self.logged_out else cause)
            finally:
                if was_open and self.logged_out:
                    self._outbox.put_close(CLOSE_NORMAL, "logged out")
                elif was_open and cause == "HeartbeatInterrupt":
                    self._outbox.put_close(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
                await self._outbox.drain()

    async def _finish(self, cause: str) -> None:
        """Leave every group (cause for the member-state change); the first call also
        reports the connection's end (State.StateChange)."""
        async with self._finishing:
            await self._leave_all(cause)

    async def _leave_all(self, cause: str) -> None:
        now = self.runtime.clock()
        for group_id in self.presence.groups:
            self.rooms.leave(self.presence.sdkappid, group_id, self)
        await self.runtime.online.disconnect(self.presence, cause=cause, now=now)
        if not self._reported:
            self._reported = True
            if self.logged_out:
                await self._connection_state("Logout", "Unregister")
            else:
                await self._connection_state(
                    "Disconnect", "TimeOut" if cause == "HeartbeatInterrupt" else "LinkClose")

    async def _connection_state(self, action: str, reason: str) -> None:
        p = self.presence
        await self.runtime.events.emit(ConnectionStateChanged(
            p.sdkappid, p.account, p.conn_id, action, reason, int(self.runtime.clock() * 1000),
            p.origin,
        ))

    async def handle(self, raw: bytes) -> None:
        frame_id: Any = None
        try:
            doc = frames.decode(raw)
            frame_id = frames.frame_id(doc)
            cmd = doc.get("cmd")
            registered = commands.REGISTRY.get(cmd) if isinstance(cmd, str) else None
            if registered is not None:
                reply = await self.dispatch_registered(registered, doc)
            else:
                reply = await self.dispatch(frames.parse(doc))
            self.send({"id": frame_id, "ErrorCode": 0, "ErrorInfo": "", **reply})
        except errors.TimError as exc:
            self.send({"id": frame_id, "ErrorCode": exc.code, "ErrorInfo": exc.info})
        except Exception as exc:
            down = unreachable(exc)
            if down is None:
                log.exception("gateway frame failed")
                info = "internal server error, try again"
            else:  # an outage, not a bug: one line, no traceback (docs/reliability.md)
                log.warning("gateway frame failed: %s is unreachable", down)
                info = f"internal error: {down} is unreachable or not answering, try again"
            self.send({"id": frame_id, "ErrorCode": errors.GroupInternalError.code,
                       "ErrorInfo": info})

    async def dispatch(self, frame: Frame) -> dict[str, Any]:
        online = self.runtime.online
        now = self.runtime.clock()
        if frame.cmd == "heartbeat":
            return {}
        if frame.cmd == "logout":
            self.logged_out = True  # the read loop ends after this reply
            await self._finish("Quit")  # applied before the reply, like every command
            return {}
        sdkappid = self.presence.sdkappid
        if frame.cmd == "join_group":
            await online.join(self.presence, frame.GroupId, now=now,
                              entered=lambda: self.rooms.enter(sdkappid, frame.GroupId, self))
            return {"GroupId": frame.GroupId}
        if frame.cmd == "quit_group":
            await online.quit(self.presence, frame.GroupId, now=now)
            self.rooms.leave(sdkappid, frame.GroupId, self)
            return {"GroupId": frame.GroupId}
        if frame.cmd == "modify_marks":
            return await self.modify_marks(frame, now)
        raise frames.unknown_command(frame.cmd)

    async def dispatch_registered(self, command: commands.GatewayCommand,
                                  doc: dict[str, Any]) -> dict[str, Any]:
        """A command a service registered (send_group_msg, send_c2c_msg, …)."""
        return await command.handler(self, command.parse(doc), self.runtime.clock())

    async def modify_marks(self, frame: Frame, now: float) -> dict[str, Any]:
        """A connected group owner or App admin sets/deletes marks >= 1000."""
        app = self.runtime.apps.get(self.presence.sdkappid)
        if app is None:
            raise errors.SdkAppIdNotFound()
        result = await self.runtime.marks.modify_marks(
            app, frame.GroupId, frame.CommandType,
            [(m.Member_Account, m.Marks) for m in frame.MemberList],
            operator=self.presence.account, now=now, origin=self.presence.origin,
            by_member=True,
        )
        return {"GroupId": frame.GroupId, "CommandType": frame.CommandType,
                "MemberList": [{"Member_Account": m.account, "Marks": list(m.marks)}
                               for m in result.members]}


async def _refuse(websocket: WebSocket, error: errors.TimError, write_timeout: float) -> None:
    """The error frame and close 4001, bounded: the client may already be gone."""
    try:
        async with asyncio.timeout(write_timeout):
            await websocket.send_bytes(_encode(
                {"event": "error", "ErrorCode": error.code, "ErrorInfo": error.info}))
            await websocket.close(CLOSE_AUTH_FAILED, "authentication failed")
    except Exception:  # gone, or not reading: drop it
        log.debug("refusing a gateway connection failed", exc_info=True)
        transport.abort(transport.transport_of(websocket))


async def gateway_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    rooms: LocalRooms = websocket.app.state.rooms
    query = websocket.query_params
    identifier = query.get("identifier", "")
    await websocket.accept()
    try:
        app = await authenticate_user(
            runtime, sdkappid=query.get("sdkappid", ""), identifier=identifier,
            usersig=query.get("usersig", ""), now=runtime.clock(),
        )
    except errors.TimError as exc:
        await _refuse(websocket, exc, runtime.settings.gateway_write_timeout)
        return
    except Exception as exc:
        # Not the client's fault as far as we know, but nothing of the client's query
        # (its UserSig) may reach the log: the type only, the traceback at debug.
        log.warning("gateway authentication failed with %s; refused with 70500",
                    type(exc).__name__)
        log.debug("gateway authentication failed", exc_info=True)
        await _refuse(websocket, errors.AccountInternalError("internal error, try again"),
                      runtime.settings.gateway_write_timeout)
        return
    platform = query.get("platform", "Unknown")
    client = websocket.client
    origin = Origin(client_ip=client.host if client else "",
                    platform=platform if platform in PLATFORMS else "Unknown")
    presence = Presence(conn_id=uuid.uuid4().hex, sdkappid=app.sdkappid, account=identifier,
                        origin=origin)
    conn = ClientConnection(runtime, rooms, websocket, presence)
    try:
        for older in rooms.register(conn):
            await older.kicked("MultiInstance")
        await runtime.presence.add_connection(app.sdkappid, identifier, presence.conn_id,
                                              platform=origin.platform)
        # Pushes for the account reached the connection since register (none is taken
        # before `connected`, which must come first); from here on they are delivered.
        conn.opened()
        await conn.run()
    finally:
        rooms.unregister(conn)
        await runtime.presence.remove_connection(app.sdkappid, identifier, presence.conn_id)


GATEWAY_HELP = (
    "This is the OpenTIM client gateway. Connect with a WebSocket:\n"
    "  ws://HOST:PORT/gateway?sdkappid=SDKAPPID&identifier=USER&usersig=USERSIG"
    "[&platform=PLATFORM]\n"
    "See docs/client-protocol.md.\n"
)


async def gateway_http(_request: Request) -> PlainTextResponse:
    """``/gateway`` without a WebSocket upgrade: say how to connect (426)."""
    return PlainTextResponse(GATEWAY_HELP, status_code=426,
                             headers={"Upgrade": "websocket", "Connection": "Upgrade"})
