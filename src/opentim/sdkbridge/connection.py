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
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from opentim import errors
from opentim.domain import messages as message_rules
from opentim.events import ConnectionStateChanged, Origin
from opentim.gateway.outbox import Outbox, Wire
from opentim.gateway.rooms import LocalRooms
from opentim.online import Presence
from opentim.protocol.auth import authenticate_user
from opentim.runtime import Runtime
from opentim.sdkbridge import frames

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_HEARTBEAT_TIMEOUT = 4008
CLOSE_TOO_SLOW = 4010
# Reason (LocalRooms / gateway) -> the SDK's KickType.
KICK_TYPES = {"MultiInstance": frames.KICK_MULTI_ACCOUNT, "Kicked": frames.KICK_REST_API,
              "AccountDeleted": frames.KICK_REST_API}
PLATFORM = "Web"  # the SDK's platform 7 (web, mini-programs, uni-app)
HELLO_INTERVAL = 30  # seconds, the login reply's HelloInterval
# Logins that may fail on one socket before it is closed (a client retrying a bad sig).
MAX_FAILED_LOGINS = 5
# A socket that ends without a logout leaves its live groups remembered this long, so the
# SDK reconnecting (it logs in again with its InstId, but joins nothing) is put back in them.
REJOIN_WINDOW = 120.0
MAX_REJOINED = 50

_decode_json = msgspec.json.Decoder().decode


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
        self._outbox = Outbox(websocket, write_timeout=runtime.settings.gateway_write_timeout,
                              on_dropped=self._dropped, counts=rooms.write_counts)
        self._finishing = asyncio.Lock()
        self._ending_groups: list[str] | None = None

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

    def offer(self, frame: Wire) -> None:
        """A gateway frame for this connection, as the SDK's push (or dropped: the frames
        the SDK has no counterpart for, such as members_changed)."""
        if not self.open or self._presence is None:
            return
        try:
            doc = _decode_json(frame.data)
        except msgspec.DecodeError:
            return
        if not isinstance(doc, dict):
            return
        pushed = frames.translate(doc, self._presence.account)
        if pushed is not None:
            self.push(*pushed)

    def offer_message(self, frame: Wire, priority: int) -> None:
        if message_rules.sheds(priority, self._outbox.queued_bytes,
                               self.runtime.settings.push_backlog_bytes):
            self.rooms.messages_shed += 1
            return
        self.offer(frame)

    def push(self, servcmd: str, events: list[dict[str, Any]]) -> None:
        self._push_seq += 1
        self.send(frames.push(servcmd, self._push_seq, self.sdkappid, events))

    async def removed_from(self, group_id: str, reason: str) -> None:
        """Removed from the group (Kicked) or the group dismissed: leave its online list,
        and tell the SDK with a group system notice."""
        presence = self._presence
        if presence is None:
            return
        group_type = presence.groups.get(group_id)
        if group_type is not None:
            await self.runtime.online.quit(presence, group_id, now=self.runtime.clock(),
                                           cause="Quit")
        op_type = frames.REMOVAL_OPS.get(reason)
        if op_type is not None and group_type is not None:
            self.push(frames.MSG_PUSH, frames.removal_events(
                group_id, group_type.value, op_type, now=int(self.runtime.clock())))

    async def kicked(self, reason: str) -> None:
        """Kicked (REST kick, account deleted, logged in once too often): leave every
        online list, go offline and tell the SDK (KICKED_OUT)."""
        presence = self._presence
        if presence is None or not self.open:
            return
        self.push(frames.FORCE_OFFLINE, frames.kick_events(
            KICK_TYPES.get(reason, frames.KICK_REST_API)))
        # The socket stays open, logged out: the SDK logs out by itself (wslogout type 1).
        # Closing it would make the SDK reconnect and log in again before it has handled
        # the kick, pushing the newer connection out in turn.
        await self._end_session("Disconnect", "LinkClose", cause="LinkClose", remember=False)

    def close(self, code: int, reason: str) -> None:
        if self.open:
            self.open = False
            self._outbox.put_close(code, reason)

    # --- writing ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not self.open:
            return
        if self._outbox and \
                self._outbox.queued_bytes + len(data) > self.runtime.settings.push_backlog_bytes:
            self.rooms.slow_clients_closed += 1
            self._outbox.clear()
            self.close(CLOSE_TOO_SLOW, "too slow: pushed events were not read")
            return
        self._outbox.put(data)

    def _dropped(self, timed_out: bool) -> None:
        self.open = False
        if timed_out:
            self.rooms.slow_clients_closed += 1

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
                await self._outbox.drain()

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
        rejoin = await self._taken_over(head.status_instid) or \
            await self._remembered_groups(head.status_instid)
        self.instance_id = head.status_instid if rejoin else secrets.randbelow(1 << 31) + 1
        runtime = self.runtime
        for older in self.rooms.register(self):
            await older.kicked("MultiInstance")
        await runtime.presence.add_connection(app.sdkappid, identifier, presence.conn_id,
                                              platform=PLATFORM)
        await self._connection_state("Login", "Register")
        for group_id in rejoin:
            try:
                await self.join(group_id, now)
            except errors.TimError as exc:  # dismissed, banned meanwhile: stays out
                log.debug("SDK reconnect: not back in %s (%s)", group_id, exc.code)
        return self._login_reply(now)

    async def join(self, group_id: str, now: float) -> None:
        """Online in a live group, as the gateway's join_group."""
        presence = self.presence

        def entered() -> None:
            self.rooms.enter(presence.sdkappid, group_id, self)

        await self.runtime.online.join(presence, group_id, now=now, entered=entered)

    def _rejoin_key(self, instance_id: int) -> str:
        p = self.presence
        return f"sdk-rejoin:{p.sdkappid}:{p.account}:{instance_id}"

    async def _taken_over(self, instance_id: int) -> list[str]:
        """The SDK reconnected while its old socket here is still open, or still ending
        (it vanished without a close, or its end is in progress): end the old one, and
        return the live groups it was in."""
        if not instance_id:
            return []
        p = self.presence
        for older in self.rooms.of_account(p.sdkappid, p.account):
            if isinstance(older, SdkConnection) and older is not self and \
                    older.instance_id == instance_id:
                groups = older.live_groups()
                older.close(CLOSE_NORMAL, "reconnected")
                await older._end_session("Disconnect", "LinkClose", cause="LinkClose",
                                         remember=False)
                with contextlib.suppress(Exception):  # remembered meanwhile: not needed
                    await self.runtime.guards.forget(self._rejoin_key(instance_id))
                return groups
        return []

    def live_groups(self) -> list[str]:
        """The live groups this connection is in, or was in when its end began."""
        if self._ending_groups is not None:
            return self._ending_groups
        return [] if self._presence is None else list(self._presence.groups)[:MAX_REJOINED]

    async def _remembered_groups(self, instance_id: int) -> list[str]:
        """The live groups this SDK instance was in when its last socket ended."""
        if not instance_id:
            return []
        found = await self.runtime.guards.pop(self._rejoin_key(instance_id))
        if not found:
            return []
        try:
            groups = msgspec.json.decode(found, type=list[str])
        except msgspec.DecodeError:
            return []
        return groups[:MAX_REJOINED]

    async def _remember_groups(self) -> None:
        groups = self.live_groups()
        if groups:
            await self.runtime.guards.update(self._rejoin_key(self.instance_id),
                                             msgspec.json.encode(groups).decode(),
                                             REJOIN_WINDOW)

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

    async def _end_session(self, action: str, reason: str, *, cause: str,
                           remember: bool = True) -> None:
        """Leave every group (``cause`` for the member-state change), go offline, and
        report the end (State.StateChange ``action``/``reason``); once per login."""
        async with self._finishing:
            presence = self._presence
            if presence is None:
                return
            # Taken before anything is awaited: a reconnect of this SDK instance finds it
            # here while the groups are being left (_taken_over).
            self._ending_groups = list(presence.groups)[:MAX_REJOINED]
            now = self.runtime.clock()
            try:
                if action == "Disconnect" and remember:
                    with contextlib.suppress(Exception):
                        await self._remember_groups()
                for group_id in presence.groups:
                    self.rooms.leave(presence.sdkappid, group_id, self)
                await self.runtime.online.disconnect(presence, cause=cause, now=now)
                await self._connection_state(action, reason)
            finally:
                self.rooms.unregister(self)
                self._presence = None
                self._ending_groups = None
                with contextlib.suppress(Exception):
                    await self.runtime.presence.remove_connection(
                        presence.sdkappid, presence.account, presence.conn_id)

    async def _connection_state(self, action: str, reason: str) -> None:
        p = self.presence
        await self.runtime.events.emit(ConnectionStateChanged(
            p.sdkappid, p.account, p.conn_id, action, reason, int(self.runtime.clock() * 1000),
            p.origin))
