"""The Python client for the gateway: a real WebSocket connection, as any app client has.

    async with opentim.client.connect("http://127.0.0.1:8080", sdkappid=…,
                                      identifier="alice", usersig=…) as session:
        await session.join_group("@TGS#a…")

Each call returns once the server has applied it (its reply frame has arrived), so the
very next REST call sees the change. A refusal raises :class:`GatewayError` with the code.
Pushed events (``members_changed``, ``kicked``, …) go to ``session.events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

GATEWAY_PATH = "/gateway"
# Pushed events that are messages: they go to ``Session.messages()``, the rest to
# ``Session.events``.
MESSAGE_EVENTS = frozenset({"group_message", "group_system_notification",
                            "group_message_recalled", "c2c_message", "c2c_message_withdrawn"})


class GatewayError(Exception):
    def __init__(self, code: int, info: str) -> None:
        self.code = code
        self.info = info
        super().__init__(f"{code}: {info}")


def gateway_url(server_url: str, **params: Any) -> str:
    parts = urlsplit(server_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, GATEWAY_PATH, urlencode(params), ""))


class Session:
    def __init__(self, ws: ClientConnection, *, heartbeat_interval: float | None) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.message_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connection_id = ""
        self.heartbeat_timeout = 0.0
        self._heartbeat_interval = heartbeat_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def _start(self) -> None:
        hello = msgspec.json.decode(await self._ws.recv())
        if hello.get("event") != "connected":
            raise GatewayError(hello.get("ErrorCode", -1), hello.get("ErrorInfo", ""))
        self.connection_id = hello["ConnectionId"]
        self.heartbeat_timeout = float(hello["HeartbeatTimeout"])
        self._tasks.append(asyncio.create_task(self._read()))
        interval = self._heartbeat_interval
        if interval is None:
            interval = self.heartbeat_timeout / 3
        if interval > 0:
            self._tasks.append(asyncio.create_task(self._beat(interval)))

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                frame = msgspec.json.decode(raw)
                waiter = self._pending.pop(frame.get("id"), None) if "id" in frame else None
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(frame)
                elif frame.get("event") in MESSAGE_EVENTS:
                    self.message_queue.put_nowait(frame)
                else:
                    self.events.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("gateway connection closed"))
            if not self._closed.done():
                self._closed.set_result(None)

    async def _beat(self, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            while True:
                await asyncio.sleep(interval)
                await self.request("heartbeat")

    async def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        frame_id = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = waiter
        await self._ws.send(msgspec.json.encode({"id": frame_id, "cmd": cmd, **fields}))
        reply = await waiter
        if reply.get("ErrorCode", 0) != 0:
            raise GatewayError(reply["ErrorCode"], reply.get("ErrorInfo", ""))
        return reply

    async def join_group(self, group_id: str) -> None:
        await self.request("join_group", GroupId=group_id)

    async def quit_group(self, group_id: str) -> None:
        await self.request("quit_group", GroupId=group_id)

    async def heartbeat(self) -> None:
        await self.request("heartbeat")

    async def send_group_message(self, group_id: str, msg_body: list[dict[str, Any]],
                                 **fields: Any) -> dict[str, Any]:
        """Send a group message as this connection's user; returns the reply's fields
        (``MsgSeq``, ``MsgTime``, ``MsgRandom``). ``fields``: Random, MsgPriority,
        OnlineOnlyFlag, CloudCustomData, To_Account."""
        return _fields(await self.request("send_group_msg", GroupId=group_id,
                                          MsgBody=msg_body, **fields))

    async def send_c2c_message(self, to_account: str, msg_body: list[dict[str, Any]],
                               **fields: Any) -> dict[str, Any]:
        """Send a one-to-one message; returns the reply's fields (``MsgTime``,
        ``MsgKey``, …). ``fields``: MsgRandom, CloudCustomData, MsgLifeTime, …"""
        return _fields(await self.request("send_c2c_msg", To_Account=to_account,
                                          MsgBody=msg_body, **fields))

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message pushed to this connection, as it arrives: group messages, system
        notifications, recalls and one-to-one messages (``event`` tells them apart),
        with Tencent's field names. Ends when the connection closes."""
        while True:
            if self._closed.done() and self.message_queue.empty():
                return
            getter: asyncio.Future[Any] = asyncio.ensure_future(self.message_queue.get())
            closed: asyncio.Future[Any] = self._closed
            done, _ = await asyncio.wait((getter, closed), return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()

    async def next_message(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next pushed message; TimeoutError if none arrives within ``timeout`` s."""
        async with asyncio.timeout(timeout):
            return await self.message_queue.get()

    async def logout(self) -> None:
        """Log out: leave every group (as a Quit); the server then closes the connection."""
        await self.request("logout")

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    @property
    def close_code(self) -> int | None:
        """The server's close code (e.g. 4008, 4011), None while open or after a reset."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._ws.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _fields(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("id", "ErrorCode", "ErrorInfo")}


# websockets logs the request line, UserSig included, at DEBUG: its records go to a logger
# of ours that never passes DEBUG, whatever level the application sets elsewhere.
_WS_LOG = logging.getLogger("opentim.client.websocket")
_WS_LOG.setLevel(logging.INFO)


@contextlib.asynccontextmanager
async def connect(server_url: str, *, sdkappid: int, identifier: str, usersig: str,
                  heartbeat_interval: float | None = None,
                  platform: str = "Unknown") -> AsyncIterator[Session]:
    """Open a gateway session; ``heartbeat_interval`` 0 sends no automatic heartbeats.

    ``platform`` (Android, iOS, Web, Windows, Mac, iPad, Linux, Unknown) is reported to
    webhooks as OptPlatform.
    """
    url = gateway_url(server_url, sdkappid=sdkappid, identifier=identifier, usersig=usersig,
                      platform=platform)
    async with ws_connect(url, max_size=1 << 22, ping_interval=None, logger=_WS_LOG) as ws:
        session = Session(ws, heartbeat_interval=heartbeat_interval)
        await session._start()
        try:
            yield session
        finally:
            await session.close()
