"""One web-SDK WebSocket: a gateway connection once it has logged in.

Before ``im_open_status.wslogin`` succeeds the socket is nobody's: it is in no room and
nothing is pushed to it. A login makes it a connection like a ``/gateway`` one: indexed
in ``LocalRooms`` (the per-account limit applies, platform Web), registered with the
presence store (query_online_status), reported to webhooks (State.StateChange), and it
receives the pushes of the rooms it joined and of its account (translated into the
SDK's push frames). ``wslogout`` ends that and leaves the socket open, as the SDK may
log in again on it.

Every frame counts as a heartbeat; a socket silent for ``heartbeat_timeout`` seconds is
closed, and its groups see the user leave with ``HeartbeatInterrupt``. Writes are queued
and written by the connection's own task, bounded as the gateway's are
(``push_backlog_bytes``, ``gateway_write_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections import deque
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from opentim import errors
from opentim.domain import messages as message_rules
from opentim.events import ConnectionStateChanged, Origin
from opentim.gateway import transport
from opentim.gateway.rooms import LocalRooms
from opentim.online import Presence
from opentim.protocol.auth import authenticate_user
from opentim.runtime import Runtime
from opentim.sdkbridge import frames

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_HEARTBEAT_TIMEOUT = 4008
CLOSE_TOO_SLOW = 4010
CLOSE_KICKED = 4013
# Reason (LocalRooms / gateway) -> the SDK's KickType.
KICK_TYPES = {"MultiInstance": frames.KICK_MULTI_ACCOUNT, "Kicked": frames.KICK_REST_API,
              "AccountDeleted": frames.KICK_REST_API}
PLATFORM = "Web"  # the SDK's platform 7 (web, mini-programs, uni-app)
HELLO_INTERVAL = 30  # seconds, the login reply's HelloInterval
# Logins that may fail on one socket before it is closed (a client retrying a bad sig).
MAX_FAILED_LOGINS = 5
CLOSE_GRACE = 15.0

_decode_json = msgspec.json.Decoder().decode


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


class SdkConnection:
    """The server's side of one SDK WebSocket (``rooms.Pushable``, ``commands.Caller``)."""

    def __init__(self, runtime: Runtime, rooms: LocalRooms, websocket: WebSocket,
                 client_ip: str) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.websocket = websocket
        self.client_ip = client_ip
        self._presence: Presence | None = None
        self.instance_id = 0
        self.usersig = ""
        self.open = True
        self._failed_logins = 0
        self._push_seq = 0
        self._write_timeout = runtime.settings.gateway_write_timeout
        self._transport = transport.transport_of(websocket)
        self._outbox: deque[bytes | _Close] = deque()
        self._outbox_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._finishing = asyncio.Lock()

    # --- who it is (Pushable, Caller) -----------------------------------------------------

    @property
    def presence(self) -> Presence:
        if self._presence is None:
            raise errors.UserSigEmpty("not logged in: send im_open_status.wslogin first")
        return self._presence

    @property
    def logged_in(self) -> bool:
        return self._presence is not None

    @property
    def sdkappid(self) -> int:
        return self.presence.sdkappid

    @property
    def account(self) -> str:
        return self.presence.account

    @property
    def platform(self) -> str:
        return PLATFORM

    @property
    def conn_id(self) -> str:
        return self.presence.conn_id

    # --- pushes -------------------------------------------------------------------------

    def offer(self, data: bytes) -> None:
        """A gateway frame for this connection, as the SDK's push (or dropped: the frames
        the SDK has no counterpart for, such as members_changed)."""
        if not self.open or self._presence is None:
            return
        try:
            doc = _decode_json(data)
        except msgspec.DecodeError:
            return
        if not isinstance(doc, dict):
            return
        pushed = frames.translate(doc, self._presence.account)
        if pushed is not None:
            self.push(*pushed)

    def offer_message(self, data: bytes, priority: int) -> None:
        if message_rules.sheds(priority, self._outbox_bytes,
                               self.runtime.settings.push_backlog_bytes):
            self.rooms.messages_shed += 1
            return
        self.offer(data)

    def push(self, servcmd: str, events: list[dict[str, Any]]) -> None:
        self._push_seq += 1
        self.send(frames.push(servcmd, self._push_seq, self.sdkappid, events))

    async def removed_from(self, group_id: str, reason: str) -> None:
        """Removed from the group (Kicked) or the group dismissed: leave its online list.
        The SDK is not told (docs/tencent-sdk.md#what-does-not-work)."""
        presence = self._presence
        if presence is not None and group_id in presence.groups:
            await self.runtime.online.quit(presence, group_id, now=self.runtime.clock(),
                                           cause="Quit")

    async def kicked(self, reason: str) -> None:
        """Kicked (REST kick, account deleted, logged in once too often): leave every
        online list, tell the SDK (KICKED_OUT) and close."""
        presence = self._presence
        if presence is None or not self.open:
            return
        self.push(frames.FORCE_OFFLINE, frames.kick_events(
            KICK_TYPES.get(reason, frames.KICK_REST_API)))
        self.close(CLOSE_KICKED, "kicked")
        await self._end_session("Disconnect", "LinkClose", cause="LinkClose")

    def close(self, code: int, reason: str) -> None:
        if self.open:
            self.open = False
            self._queue(_Close(code, reason))

    # --- writing ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not self.open:
            return
        if self._outbox and \
                self._outbox_bytes + len(data) > self.runtime.settings.push_backlog_bytes:
            self.rooms.slow_clients_closed += 1
            self._outbox.clear()
            self._outbox_bytes = 0
            self.close(CLOSE_TOO_SLOW, "too slow: pushed events were not read")
            return
        self._queue(data)

    def _queue(self, item: bytes | _Close) -> None:
        self._outbox.append(item)
        if isinstance(item, bytes):
            self._outbox_bytes += len(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_outbox())

    async def _write_outbox(self) -> None:
        try:
            while self._outbox:
                item = self._outbox.popleft()
                async with asyncio.timeout(self._write_timeout):
                    if isinstance(item, _Close):
                        self._outbox.clear()
                        await self.websocket.close(item.code, item.reason)
                    else:
                        self._outbox_bytes -= len(item)
                        await self.websocket.send_bytes(item)
        except TimeoutError:
            self.rooms.slow_clients_closed += 1
            self._drop()
        except Exception:  # the client is gone or going
            log.debug("writing to an SDK connection failed", exc_info=True)
            self._drop()
        finally:
            self._writer = None

    def _drop(self) -> None:
        self.open = False
        self._outbox.clear()
        self._outbox_bytes = 0
        transport.abort(self._transport)

    async def _drain(self) -> None:
        writer = self._writer
        if writer is not None:
            try:
                async with asyncio.timeout(self._write_timeout):
                    await asyncio.shield(writer)
            except TimeoutError:
                writer.cancel()
                self._drop()
        if self._transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort,
                                                  self._transport)

    # --- reading ------------------------------------------------------------------------

    async def run(self) -> None:
        from opentim.sdkbridge.handlers import handle

        timeout = self.runtime.settings.heartbeat_timeout
        timed_out = False
        try:
            while self.open:
                try:
                    async with asyncio.timeout(timeout):
                        message = await self.websocket.receive()
                except TimeoutError:
                    timed_out = True
                    break
                if message["type"] == "websocket.disconnect" or not self.open:
                    break
                raw = message.get("bytes") or (message.get("text") or "").encode()
                await handle(self, raw)
        except WebSocketDisconnect:
            pass
        finally:
            try:
                await self._end_session(
                    "Disconnect", "TimeOut" if timed_out else "LinkClose",
                    cause="HeartbeatInterrupt" if timed_out else "LinkClose")
            finally:
                if timed_out:
                    self.close(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
                self.open = False
                await self._drain()

    # --- logging in and out -----------------------------------------------------------------

    async def login(self, head: frames.Head, now: float) -> dict[str, Any]:
        """wslogin: check the UserSig (or the A2Key of an earlier login), then become a
        gateway connection. Refusals have the UserSig codes of docs/errors.md."""
        identifier, usersig = head.identifier or "", head.usersig or ""
        if not usersig and head.a2:
            identifier, usersig = frames.from_a2_key(head.a2)
        sdkappid = str(head.sdkappid)
        if self._presence is not None:
            if identifier == self._presence.account and \
                    sdkappid == str(self._presence.sdkappid):
                return self._login_reply(now)  # logged in already: the same answer
            raise errors.IdentifierInvalid("this connection is logged in as another user: "
                                           "log out first")
        try:
            app = await authenticate_user(self.runtime, sdkappid=sdkappid,
                                          identifier=identifier, usersig=usersig, now=now)
        except errors.TimError:
            self._failed_logins += 1
            if self._failed_logins >= MAX_FAILED_LOGINS:
                self.close(4001, "authentication failed")
            raise
        except Exception as exc:
            # Nothing of the client's sig may reach the log: the type only.
            log.warning("SDK login failed with %s; refused with 70500", type(exc).__name__)
            log.debug("SDK login failed", exc_info=True)
            raise errors.AccountInternalError("internal error, try again") from None
        presence = Presence(conn_id=uuid.uuid4().hex, sdkappid=app.sdkappid,
                            account=identifier,
                            origin=Origin(client_ip=self.client_ip, platform=PLATFORM))
        self._presence = presence
        self.usersig = usersig
        self.instance_id = secrets.randbelow(1 << 31) + 1
        runtime = self.runtime
        for older in self.rooms.register(self):
            await older.kicked("MultiInstance")
        await runtime.presence.add_connection(app.sdkappid, identifier, presence.conn_id,
                                              platform=PLATFORM)
        await self._connection_state("Login", "Register")
        return self._login_reply(now)

    def _login_reply(self, now: float) -> dict[str, Any]:
        p = self.presence
        app = self.runtime.apps.get(p.sdkappid)
        return {"A2Key": frames.a2_key(p.account, self.usersig),
                "TinyId": frames.tiny_id(p.sdkappid, p.account),
                "HelloInterval": HELLO_INTERVAL, "InstId": self.instance_id,
                "TimeStamp": int(now),
                "PurchaseBits": frames.purchase_bits(
                    online_member_list=bool(app and app.has_online_member_list))}

    async def logout(self) -> None:
        """wslogout: leave every group, go offline; the socket stays open."""
        await self._end_session("Logout", "Unregister", cause="Quit")

    async def _end_session(self, action: str, reason: str, *, cause: str) -> None:
        """Leave every group (``cause`` for the member-state change), go offline, and
        report the end (State.StateChange ``action``/``reason``); once per login."""
        async with self._finishing:
            presence = self._presence
            if presence is None:
                return
            now = self.runtime.clock()
            try:
                for group_id in presence.groups:
                    self.rooms.leave(presence.sdkappid, group_id, self)
                await self.runtime.online.disconnect(presence, cause=cause, now=now)
                await self._connection_state(action, reason)
            finally:
                self.rooms.unregister(self)
                self._presence = None
                with contextlib.suppress(Exception):
                    await self.runtime.presence.remove_connection(
                        presence.sdkappid, presence.account, presence.conn_id)

    async def _connection_state(self, action: str, reason: str) -> None:
        p = self.presence
        await self.runtime.events.emit(ConnectionStateChanged(
            p.sdkappid, p.account, p.conn_id, action, reason, int(self.runtime.clock() * 1000),
            p.origin))
