"""The gateway under clients that misbehave: bounded frames and ids, clients that stop
reading, deleted accounts, too many connections, bad input; and one process behaving as
two do. Real servers, real sockets; several tests run two servers sharing Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import statistics
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from TLSSigAPIv2 import TLSSigAPIv2
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from opentim import online
from opentim.client import GatewayError
from opentim.client.session import gateway_url
from opentim.domain.apps import App
from opentim.events import AccountsDeleted, ConnectionStateChanged, MemberStateChanged
from opentim.gateway import endpoint, limits
from opentim.settings import Settings
from tests.helpers import (
    LiveServer,
    create_group,
    import_accounts,
    live_server,
    live_servers,
    members,
    next_event,
)

AV = "group_open_avchatroom_http_svc"
TCP_ESTABLISHED = 1


def sig(app: App, user: str) -> str:
    return TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)


async def listed(tim, group_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["Member_Account"] for r in (await members(tim, group_id))[0]]


async def until(condition, seconds: float, what: str, every: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Wait for ``await condition()`` to be true; returns how long it took."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(every)
    return time.monotonic() - start


# --- a client on a plain socket, that reads only when told to ----------------------------


class RawClient:
    """A WebSocket client on a plain TCP socket with a small receive buffer. It reads only
    in ``recv``; between calls the kernel buffers fill up and the server's writes stall, as
    with a client that stopped reading."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self._events: list[Any] = []

    @classmethod
    async def open(cls, url: str, *, rcvbuf: int | None = 4096,
                   deflate: bool = False) -> RawClient:
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connecting, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        protocol = ClientProtocol(uri, extensions=extensions, max_size=None)
        client = cls(sock, protocol)
        protocol.send_request(protocol.connect())
        await client._flush()
        async with asyncio.timeout(10):
            while not isinstance(response := await client._next(), Response):
                pass
        client.response = response
        return client

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    async def _next(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            self._events += self.protocol.events_received()
            if self._events:
                return self._events.pop(0)
            data = await loop.sock_recv(self.sock, 65536)
            self.protocol.receive_data(data)
            if not data:
                return None

    async def recv(self, seconds: float = 10.0) -> dict[str, Any] | None:
        """The next data frame as JSON (None once closed); answers nothing else."""
        async with asyncio.timeout(seconds):
            while True:
                event = await self._next()
                if event is None:
                    return None
                if isinstance(event, Frame):
                    if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                        return json.loads(bytes(event.data))
                    if event.opcode is Opcode.CLOSE:
                        await self._flush()
                        self.close_frame = event
                        return None

    async def send(self, doc: dict[str, Any] | bytes, seconds: float = 5.0) -> None:
        data = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
        self.protocol.send_text(data)
        async with asyncio.timeout(seconds):
            await self._flush()

    async def request(self, doc: dict[str, Any]) -> dict[str, Any]:
        await self.send(doc)
        while True:
            frame = await self.recv()
            assert frame is not None, "closed"
            if "id" in frame:
                return frame

    def tcp_state(self) -> int:
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return struct.unpack("B", info[:1])[0]

    def close(self) -> None:
        self.sock.close()


@contextlib.asynccontextmanager
async def raw_client(live: LiveServer, app: App, user: str, **kwargs: Any
                     ) -> AsyncIterator[RawClient]:
    url = gateway_url(live.url, sdkappid=app.sdkappid, identifier=user, usersig=sig(app, user))
    client = await RawClient.open(url, **kwargs)
    try:
        hello = await client.recv()
        assert hello is not None and hello["event"] == "connected", hello
        yield client
    finally:
        client.close()


async def flood(client: RawClient, frames: int) -> int:
    """Pipeline ``frames`` requests whose error replies are about 300 bytes each, without
    reading any; stops early if the server stops reading. Returns how many went out."""
    frame = {"id": "i" * 64, "cmd": "c" * 64}
    for sent in range(frames):
        try:
            await client.send(frame, seconds=2.0)
        except TimeoutError:
            return sent
    return frames


# --- 3. a client that stops reading stalls nobody ----------------------------------------


HB = 2.0  # heartbeat timeout in these tests
# The server's write timeout plus generous slack for a loaded 2-core machine: the bound is
# against stalls of minutes, not a latency measurement.
BOUND = Settings().gateway_write_timeout + 10.0
# Replies the stuck client never reads: far more than the kernel can buffer between the
# two sockets (its 4 KiB receive buffer, the server's send buffer, at most tcp_wmem's 4 MiB
# here) plus the transport's 64 KiB, so the server's writes to it stall.
FLOOD_FRAMES = 30_000  # about 9 MB of replies


async def test_a_client_that_stops_reading_stalls_nobody(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # No backlog limit to speak of: only the heartbeat timeout and the write timeout end
    # the stuck connection here.
    hb = 5.0  # time enough for the removals below while it is still connected
    async with live_servers(2, f"sqlite:///{tmp_path}/stuck.db", heartbeat_timeout=hb,
                            push_backlog_bytes=1 << 30) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "stuck", "host", "guest")
            doomed_here, doomed_there, watched, other = [
                await create_group(tim_a, "AVChatRoom") for _ in range(4)]
            async with a.connect(app, "host", heartbeat_interval=hb / 4) as host, \
                    raw_client(a, app, "stuck") as stuck:
                await host.join_group(other)
                for group_id in (doomed_here, doomed_there):
                    reply = await stuck.request({"id": 1, "cmd": "join_group",
                                                 "GroupId": group_id})
                    assert reply["ErrorCode"] == 0, reply
                await flood(stuck, FLOOD_FRAMES)  # replies it never reads
                # Its last frame, a join: once applied, every frame before it was handled,
                # and their replies have backed up on the server.
                await stuck.send({"cmd": "join_group", "GroupId": watched})
                await until(lambda: _present(tim_a, watched, "stuck"), BOUND,
                            "the server keeps handling the frames of a client that reads none")
                stopped = time.monotonic()
                # a removal through this process: the REST call does not wait on the socket
                async with asyncio.timeout(BOUND):
                    await tim_a.ok("group_open_http_svc/destroy_group",
                                   {"GroupId": doomed_here})
                # one through the other process: a's relay applies it without waiting...
                async with asyncio.timeout(BOUND):
                    await tim_b.ok("group_open_http_svc/destroy_group",
                                   {"GroupId": doomed_there})
                # others are answered as usual meanwhile
                beats, reads = await timed_calls(host, tim_a, other, time.monotonic() + 1.0)
                print(f"while stuck: heartbeat {_ms(beats)}, REST {_ms(reads)}")
                assert max(beats) < 2.0 and max(reads) < 2.0  # generous: against stalls
                # ...and keeps carrying b's changes of other groups to a's connections
                async with b.connect(app, "guest") as guest:
                    await guest.join_group(other)
                    seen: list[str] = []
                    async with asyncio.timeout(BOUND):
                        while "guest" not in seen:
                            seen += (await next_event(host, "members_changed", BOUND))["Online"]
                # silent since its last frame: it leaves the list on its heartbeat timeout
                await until(lambda: _absent(tim_b, watched, "stuck"), hb + BOUND,
                            "the stuck user leaves the online list")
                assert time.monotonic() - stopped < hb + BOUND
                # and its socket is dropped, although the client never read
                await until(_dropped(stuck), hb + BOUND, "the stuck socket is dropped")


async def _present(tim, group_id: str, user: str) -> bool:  # type: ignore[no-untyped-def]
    return user in await listed(tim, group_id)


async def _absent(tim, group_id: str, user: str) -> bool:  # type: ignore[no-untyped-def]
    return user not in await listed(tim, group_id)


def _dropped(client: RawClient):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return client.tcp_state() != TCP_ESTABLISHED
    return check


async def test_a_stuck_client_that_keeps_sending_is_dropped(presence_backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """It never goes silent, so only the write timeout (3 s here) can end it."""
    async with live_server(f"sqlite:///{tmp_path}/write.db", presence_backend,
                           heartbeat_timeout=HB, push_backlog_bytes=1 << 30,
                           gateway_write_timeout=3.0) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "stuck")
            group_id = await create_group(tim, "AVChatRoom")
            async with raw_client(live, app, "stuck") as stuck:
                reply = await stuck.request({"id": 1, "cmd": "join_group", "GroupId": group_id})
                assert reply["ErrorCode"] == 0, reply
                await flood(stuck, FLOOD_FRAMES)
                start = time.monotonic()

                async def beats_and_is_listed() -> bool:
                    with contextlib.suppress(TimeoutError, OSError):
                        await stuck.send({"cmd": "heartbeat"}, seconds=0.2)
                    return "stuck" not in await listed(tim, group_id)

                await until(beats_and_is_listed, BOUND, "the stuck user leaves the list",
                            every=HB / 4)
                assert time.monotonic() - start < BOUND
                await until(_dropped(stuck), BOUND, "the stuck socket is dropped")
        causes = [(e.account, e.online) for e in live.events
                  if isinstance(e, MemberStateChanged)]
        assert ("stuck", False) in causes


# --- 8. deleted accounts, 6. too many connections of one account -------------------------


async def closed_with(session, code: int) -> None:  # type: ignore[no-untyped-def]
    await asyncio.wait_for(session.wait_closed(), BOUND)
    assert session.close_code == code


async def test_a_deleted_accounts_connections_are_kicked_in_every_process(db_url: str) -> None:
    async with live_servers(2, db_url) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "gone", "stays", "host")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "gone") as gone_a, \
                    b.connect(app, "gone") as gone_b, \
                    b.connect(app, "gone") as gone_idle, \
                    a.connect(app, "stays") as stays, \
                    b.connect(app, "host") as host:
                for session in (gone_a, gone_b, stays, host):
                    await session.join_group(group_id)
                assert sorted(await listed(tim_a, group_id)) == ["gone", "host", "stays"]
                reply = await tim_a.ok("im_open_login_svc/account_delete",
                                       {"DeleteItem": [{"UserID": "gone"}]})
                assert reply["ResultItem"][0]["ResultCode"] == 0
                # this process took its connection out of the list before answering
                assert "gone" not in await listed(tim_a, group_id)
                for session in (gone_a, gone_b, gone_idle):  # in a group or not
                    event = await next_event(session, "kicked", BOUND)
                    assert event == {"event": "kicked", "Reason": "AccountDeleted"}
                    await closed_with(session, endpoint.CLOSE_ACCOUNT_DELETED)
                await until(lambda: _absent(tim_b, group_id, "gone"), BOUND,
                            "b's connection of the deleted account leaves the list")
                for session in (stays, host):  # the others see it go offline
                    offline: list[str] = []
                    async with asyncio.timeout(BOUND):
                        while "gone" not in offline:
                            offline += (await next_event(session, "members_changed",
                                                         BOUND))["Offline"]
                await stays.heartbeat()  # the others stay connected
                await host.heartbeat()
            # reconnecting works (the sig is still valid) but joining does not
            async with b.connect(app, "gone") as again:
                with pytest.raises(GatewayError) as refused:
                    await again.join_group(group_id)
                assert refused.value.code == 10019
    for server in (a, b):  # each process reported its connections' end like a disconnect
        ends = [e for e in server.events if isinstance(e, ConnectionStateChanged)
                and e.account == "gone" and e.action == "Disconnect"]
        assert ends and all(e.reason == "LinkClose" for e in ends), server.events


async def test_the_accounts_deleted_event_closes_connections_not_in_groups(
        live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "gone", "other")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "gone") as idle, live.connect(app, "gone") as joined, \
                live.connect(app, "other") as other:
            await joined.join_group(group_id)
            await other.join_group(group_id)
            await live.runtime.events.emit(AccountsDeleted(app.sdkappid, ("gone",),
                                                           int(time.time() * 1000)))
            assert await listed(tim, group_id) == ["other"]
            for session in (idle, joined):
                assert (await next_event(session, "kicked"))["Reason"] == "AccountDeleted"
                await closed_with(session, endpoint.CLOSE_ACCOUNT_DELETED)
            await other.heartbeat()
    offline = [e for e in live.events if isinstance(e, MemberStateChanged)
               and e.account == "gone" and not e.online]
    assert [(e.group_id, e.cause) for e in offline] == [(group_id, "LinkClose")]


async def test_a_connection_that_missed_the_deletion_stops_joining(live: LiveServer) -> None:
    """Pub/sub is at-most-once: a process may miss the AccountsDeleted of another. Its
    connection's cached profile then lets it join for at most PROFILE_TTL."""
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "gone")
        first, second = [await create_group(tim, "AVChatRoom") for _ in range(2)]
        async with live.connect(app, "gone") as session:
            await session.join_group(first)
            # deleted through another process whose announcement never arrived here
            await live.runtime.store.accounts.delete(app.sdkappid, ["gone"])
            await session.quit_group(first)
            await session.join_group(first)  # the cached profile, within its TTL
            live.clock.advance(online.PROFILE_TTL + 1)
            with pytest.raises(GatewayError) as refused:
                await session.join_group(second)
            assert refused.value.code == 10019


def test_the_connection_limits_follow_tencents_multi_instance_rule() -> None:
    class Conn:
        def __init__(self, platform: str) -> None:
            self.platform = platform

    web = [Conn("Web") for _ in range(5)] + [Conn("Unknown") for _ in range(5)]
    android = [Conn("Android") for _ in range(3)]
    existing = [web[0], android[0], *web[1:], *android[1:]]
    assert limits.to_kick(existing, "Web") == [web[0]]  # Unknown counts as Web
    assert limits.to_kick(existing, "Unknown") == [web[0]]
    assert limits.to_kick(existing, "Android") == [android[0]]
    assert limits.to_kick(existing, "iOS") == []
    assert limits.to_kick(existing[:3], "Web") == []


async def test_the_connection_limits_are_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite:///{tmp_path}/caps.db", "memory",
                           max_web_connections_per_account=2,
                           max_device_connections_per_account=1) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "u")
        async with contextlib.AsyncExitStack() as stack:
            web = [await stack.enter_async_context(live.connect(app, "u")) for _ in range(2)]
            phone = await stack.enter_async_context(live.connect(app, "u", platform="iOS"))
            await stack.enter_async_context(live.connect(app, "u", platform="iOS"))
            await closed_with(phone, endpoint.CLOSE_LOGGED_IN_ELSEWHERE)
            await stack.enter_async_context(live.connect(app, "u", platform="Web"))
            await closed_with(web[0], endpoint.CLOSE_LOGGED_IN_ELSEWHERE)
            await web[1].heartbeat()


async def test_an_account_over_its_connection_limit_kicks_its_oldest(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u", "v")
        group_id = await create_group(tim, "AVChatRoom")
        async with contextlib.AsyncExitStack() as stack:
            web = [await stack.enter_async_context(live.connect(app, "u"))
                   for _ in range(Settings().max_web_connections_per_account)]
            phones = [await stack.enter_async_context(live.connect(app, "u", platform="Android"))
                      for _ in range(Settings().max_device_connections_per_account)]
            other = await stack.enter_async_context(live.connect(app, "v"))
            await web[0].join_group(group_id)
            newest = await stack.enter_async_context(live.connect(app, "u", platform="Web"))
            assert (await next_event(web[0], "kicked"))["Reason"] == "MultiInstance"
            await closed_with(web[0], endpoint.CLOSE_LOGGED_IN_ELSEWHERE)
            assert await listed(tim, group_id) == []  # its only connection in the group
            phone = await stack.enter_async_context(live.connect(app, "u", platform="Android"))
            await closed_with(phones[0], endpoint.CLOSE_LOGGED_IN_ELSEWHERE)
            for session in (*web[1:], *phones[1:], newest, phone, other):
                await session.heartbeat()  # every other connection is untouched


async def test_one_account_opening_connections_in_a_loop_stays_bounded(live: LiveServer) -> None:
    """Bounded abuse: one identifier opens 200 connections, keeping them all; the server
    holds at most 10 of them, and another user is answered as usual meanwhile."""
    app = await live.new_app(rate_limit=0)
    rooms = live.asgi.state.rooms  # type: ignore[attr-defined]
    async with live.client(app) as tim:
        await import_accounts(tim, "good")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "good", heartbeat_interval=0) as good, \
                contextlib.AsyncExitStack() as stack:
            await good.join_group(group_id)
            opened = 0

            async def open_many() -> None:
                nonlocal opened
                for _ in range(200):
                    await stack.enter_async_context(live.connect(app, "bad", heartbeat_interval=0))
                    opened += 1

            opener = asyncio.create_task(open_many())
            beats, reads = await timed_calls(good, tim, group_id, time.monotonic() + 1.0)
            await asyncio.wait_for(opener, 60)
            figures = f"{opened} opened: heartbeat {_ms(beats)}, REST {_ms(reads)}"
            print(figures)
            assert max(beats) < 2.0 and max(reads) < 2.0, figures  # generous: against stalls
            assert len(rooms.of_account(app.sdkappid, "bad")) == limits.MAX_WEB_CONNECTIONS


async def test_a_lost_presence_lease_closes_connections_in_groups(presence_backend,
                                                                  tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite:///{tmp_path}/lease.db", presence_backend) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "u", "idle")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "u") as joined, live.connect(app, "idle") as idle:
                await joined.join_group(group_id)
                assert live.runtime.lease_lost_hooks
                for hook in live.runtime.lease_lost_hooks:  # what a lost lease runs
                    await hook()
                await closed_with(joined, endpoint.CLOSE_LEASE_LOST)
                await until(lambda: _absent(tim, group_id, "u"), BOUND, "it leaves the list")
                await idle.heartbeat()  # not in a group: not closed


# --- 12. one process and two push the same -------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_join_is_announced_to_the_joining_connection_too(processes: int,
                                                                tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with live_servers(processes, f"sqlite:///{tmp_path}/join.db") as servers:
        a, b = servers[0], servers[-1]
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim:
            await import_accounts(tim, "host", "guest")
            group_id = await create_group(tim, "AVChatRoom")
            async with a.connect(app, "host") as host:
                await host.join_group(group_id)
                assert (await next_event(host, "members_changed"))["Online"] == ["host"]
                async with b.connect(app, "guest") as guest:  # through b, host is on a
                    await guest.join_group(group_id)
                    event = await next_event(guest, "members_changed")
                    # (host's own join, relayed to b a moment ago, may be in this batch too)
                    assert "guest" in event["Online"], (processes, event)
                    event = await next_event(host, "members_changed")
                    assert event["Online"] == ["guest"], (processes, event)


# --- 2. frames bounded after inflating, ids bounded ---------------------------------------


async def test_frame_ids_are_bounded(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.raw_connect(app, "u") as ws:
        echoed = [None, 0, -(1 << 63), (1 << 63) - 1, "", "x" * 64, "é" * 64]
        refused = [1 << 63, -(1 << 63) - 1, 10 ** 30, "x" * 65, 1.5, True, [1], {"a": 1}]
        cases = [(v, True) for v in echoed] + [(v, False) for v in refused]
        for value, ok in cases:
            await ws.send(json.dumps({"id": value, "cmd": "heartbeat"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if ok:
                assert reply == {"id": value, "ErrorCode": 0, "ErrorInfo": ""}, value
            else:
                assert reply["id"] is None and reply["ErrorCode"] == 10004, (value, reply)
        await ws.send(json.dumps({"cmd": "heartbeat"}))  # no id: a null one
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["id"] is None


async def test_a_compressed_frame_is_bounded_after_inflating(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite:///{tmp_path}/deflate.db", "memory",
                           ws_compression=True) as live:
        app = await live.new_app(rate_limit=0)
        limit = live.runtime.settings.max_frame_bytes
        url = gateway_url(live.url, sdkappid=app.sdkappid, identifier="u", usersig=sig(app, "u"))
        bomb = b'{"cmd":"heartbeat","x":"' + b"a" * (8 << 20) + b'"}'  # 8 MiB, ~8 KB deflated
        async with websockets.connect(url, compression="deflate", max_size=None) as ws:
            assert ws.protocol.extensions, "permessage-deflate was not negotiated"
            await ws.recv()  # connected
            await ws.send(b'{"id":1,"cmd":"heartbeat","x":"' + b"a" * (limit - 64) + b'"}')
            assert json.loads(await ws.recv())["ErrorCode"] == 0  # just under the limit
        _reset_peak_rss()
        before = _peak_rss()

        async def one(i: int) -> int | None:
            user = f"u{i}"  # not one account: it may hold only 10 connections
            url = gateway_url(live.url, sdkappid=app.sdkappid, identifier=user,
                              usersig=sig(app, user))
            async with websockets.connect(url, compression="deflate", max_size=None) as ws:
                await ws.recv()
                await ws.send(bomb)
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), BOUND)
                return ws.close_code

        codes = await asyncio.gather(*(one(i) for i in range(16)))
        assert codes == [1009] * 16
        # 16 inflated bombs would be 128 MiB; the server never inflates past the limit.
        # (A generous bound on this process's peak memory, which also holds the clients.)
        assert _peak_rss() - before < 64 << 20, (before, _peak_rss())


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_a_large_frame_is_refused_without_compression(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    limit = live.runtime.settings.max_frame_bytes
    url = gateway_url(live.url, sdkappid=app.sdkappid, identifier="u", usersig=sig(app, "u"))
    async with websockets.connect(url, compression="deflate", max_size=None) as ws:
        assert not ws.protocol.extensions  # compression is off by default
        await ws.recv()
        await ws.send(b'{"cmd":"heartbeat","x":"' + b"a" * limit + b'"}')
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), BOUND)
        assert ws.close_code == 1009


async def test_a_500_member_modify_marks_fits_in_a_frame(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "owner")
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="owner")
        # the largest plausible one: 32-byte UserIDs (Tencent's limit), 10 ten-digit marks
        items = [{"Member_Account": f"{i:032d}", "Marks": list(range(4_294_967_286, 4_294_967_296))}
                 for i in range(500)]
        frame = {"id": 1, "cmd": "modify_marks", "GroupId": group_id, "CommandType": 1,
                 "MemberList": items}
        size = len(msgspec.json.encode(frame))
        assert size < live.runtime.settings.max_frame_bytes * 0.75, size
        async with live.connect(app, "owner") as owner:
            with pytest.raises(GatewayError) as refused:  # answered, not closed
                await owner.request("modify_marks", GroupId=group_id, CommandType=1,
                                    MemberList=items)
            assert refused.value.code == 10004  # none of them is online
            await owner.heartbeat()


def deflated_frame(payload: bytes) -> bytes:
    """One client frame carrying ``payload`` compressed with permessage-deflate, made once:
    valid as the first message of any connection that negotiated the extension (a fresh
    compressor, and uvicorn's 12-bit window)."""
    compressor = zlib.compressobj(wbits=-12)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]
    assert len(data) < 1 << 16
    mask = os.urandom(4)
    # FIN, RSV1 (compressed), text; masked, 16-bit length (RFC 6455 §5.2, RFC 7692 §6)
    return struct.pack("!BBH", 0x80 | 0x40 | 0x1, 0x80 | 126, len(data)) + mask + \
        apply_mask(data, mask)


async def timed_calls(good, tim, group_id: str, until_t: float  # type: ignore[no-untyped-def]
                      ) -> tuple[list[float], list[float]]:
    beats: list[float] = []
    reads: list[float] = []
    while time.monotonic() < until_t:
        t = time.monotonic()
        await asyncio.wait_for(good.heartbeat(), BOUND)
        beats.append(time.monotonic() - t)
        t = time.monotonic()
        await asyncio.wait_for(tim.ok("group_open_http_svc/get_online_member_num",
                                      {"GroupId": group_id}), BOUND)
        reads.append(time.monotonic() - t)
        await asyncio.sleep(0.05)
    return beats, reads


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


async def test_abuse_leaves_other_clients_answered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Bounded abuse: 8 clients sending 4 KB frames that inflate to 4 MiB (each closed with
    1009, then reconnecting) for 3 s, while a normal client's heartbeat replies and a REST
    read are timed, before and during the abuse."""
    async with live_server(f"sqlite:///{tmp_path}/abuse.db", "memory",
                           ws_compression=True) as live:
        app = await live.new_app(rate_limit=0)
        bomb = deflated_frame(b'{"cmd":"heartbeat","x":"' + b"a" * (4 << 20) + b'"}')
        assert len(bomb) < 8 << 10
        bombs = 0

        async def attacker(n: int, stop: float) -> None:
            nonlocal bombs
            while time.monotonic() < stop:
                async with raw_client(live, app, f"bad{n}", rcvbuf=None,
                                      deflate=True) as client:
                    assert "permessage-deflate" in client.response.headers[
                        "Sec-WebSocket-Extensions"]
                    await asyncio.get_running_loop().sock_sendall(client.sock, bomb)
                    assert await client.recv(BOUND) is None  # closed, unanswered
                    assert Close.parse(client.close_frame.data).code == 1009
                    bombs += 1

        async with live.client(app) as tim:
            await import_accounts(tim, "good")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "good", heartbeat_interval=0) as good:
                await good.join_group(group_id)
                quiet = await timed_calls(good, tim, group_id, time.monotonic() + 1.0)
                stop = time.monotonic() + 3.0
                attackers = [asyncio.create_task(attacker(n, stop)) for n in range(8)]
                busy = await timed_calls(good, tim, group_id, stop)
                await asyncio.gather(*attackers)
        figures = (f"quiet: heartbeat {_ms(quiet[0])}, REST {_ms(quiet[1])}; during "
                   f"{bombs} bombs: heartbeat {_ms(busy[0])}, REST {_ms(busy[1])}")
        print(figures)
        assert bombs >= 8
        # Generous bounds (a loaded 2-core machine), against stalls of seconds.
        assert max(busy[0]) < 2.0 and max(busy[1]) < 2.0, figures


# --- 7. bad input answered, 9. closing clients are not errors, 13. clear texts -----------


async def test_deeply_nested_json_gets_a_parse_error(live: LiveServer, caplog) -> None:  # type: ignore[no-untyped-def]
    app = await live.new_app(rate_limit=0)
    caplog.set_level(logging.DEBUG)
    async with live.raw_connect(app, "u") as ws:
        for nested in (b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000):
            await ws.send(b'{"id":1,"cmd":"heartbeat","x":' + nested + b"}")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["ErrorCode"] == 60003 and reply["id"] is None, reply
        await ws.send(b'{"id":2,"cmd":"heartbeat"}')  # the connection still answers
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == \
            {"id": 2, "ErrorCode": 0, "ErrorInfo": ""}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@contextlib.contextmanager
def server_logs(caplog):  # type: ignore[no-untyped-def]
    """Every record of the server's loggers at DEBUG, uvicorn's included (its loggers do
    not propagate to the root logger that caplog listens on)."""
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")
    try:
        yield caplog.records
    finally:
        uvicorn_logger.removeHandler(caplog.handler)


def loud(records) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    """Errors, and tracebacks above debug."""
    return [r for r in records if r.levelno >= logging.ERROR or
            (r.exc_info and r.levelno > logging.DEBUG)]


async def test_an_overlong_sdkappid_gets_an_error_frame(live: LiveServer, caplog) -> None:  # type: ignore[no-untyped-def]
    app = await live.new_app(rate_limit=0)
    url = gateway_url(live.url, sdkappid="9" * 5000, identifier="u", usersig=sig(app, "u"))
    with server_logs(caplog) as records:
        async with websockets.connect(url) as ws:
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        assert error["event"] == "error" and error["ErrorCode"] == 60006, error
        assert ws.close_code == endpoint.CLOSE_AUTH_FAILED
        await asyncio.sleep(0.2)
    assert not loud(records), records


async def test_clients_that_close_with_replies_pending_log_no_errors(live: LiveServer,
                                                                    caplog) -> None:  # type: ignore[no-untyped-def]
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u")
        group_id = await create_group(tim, "AVChatRoom")
    with server_logs(caplog) as records:
        for i in range(40):
            async with raw_client(live, app, "u", rcvbuf=None) as client:
                for n in range(5):
                    await client.send({"id": n, "cmd": "join_group", "GroupId": group_id})
                    await client.send({"id": n, "cmd": "heartbeat"})
                if i % 2:  # a reset, with the replies on their way
                    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                else:  # a close frame, never reading the replies or the server's close
                    client.protocol.send_close(1000)
                    await client._flush()
        async with live.client(app) as tim:  # every connection is gone from the list
            await until(lambda: _absent(tim, group_id, "u"), BOUND, "closed clients leave")
        await asyncio.sleep(0.5)
    assert not loud(records), [r.getMessage() for r in loud(records)]


async def test_the_gateway_over_plain_http_says_how_to_connect(live: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"{live.url}/gateway", params={"sdkappid": "1"})
    assert reply.status_code == 426
    assert reply.headers["upgrade"] == "websocket"
    assert "WebSocket" in reply.text and "usersig=" in reply.text


async def test_an_unknown_command_lists_the_commands(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.connect(app, "u") as session:
        for cmd in ("Heartbeat", "x" * 10_000):
            with pytest.raises(GatewayError) as refused:
                await session.request(cmd)
            assert refused.value.code == 10003
            info = refused.value.info
            assert all(c in info for c in
                       ("heartbeat", "join_group", "quit_group", "modify_marks", "logout"))
            assert len(info) < 300, info  # the unknown name is not echoed at length


async def test_opentim_serve_drops_a_client_that_never_reads(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Found by ``bench/run --only abuse``: under ``opentim serve`` (uvloop, whose transports
    are not asyncio.BaseTransport) the socket of a client that stopped reading was counted
    as dropped but kept open, with megabytes unsent. A real server process, since the
    in-process test servers run on asyncio's own loop."""
    from opentim.client.rest import RestClient
    from tests.helpers.faults import (
        TCP_ESTABLISHED,
        seed_app,
        serve_processes,
        tcp_state,
        usersig,
    )

    monkeypatch.setenv("OPENTIM_GATEWAY_WRITE_TIMEOUT", "1")
    db_url = f"sqlite:///{tmp_path}/never.db"
    app = await seed_app(db_url, group_msg_rate=0)
    async with serve_processes(1, db_url, tmp_path, log_level="info") as (server,), \
            RestClient(server.url, sdkappid=app.sdkappid, identifier="administrator",
                       usersig=usersig(app, "administrator")) as tim:
        await import_accounts(tim, "host", "reader")
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
        sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        url = gateway_url(server.url, sdkappid=app.sdkappid, identifier="reader",
                          usersig=usersig(app, "reader"))
        async with websockets.connect(url, sock=sock, max_queue=1, compression=None,
                                      ping_interval=None, max_size=1 << 22) as ws:
            await ws.recv()  # connected
            await ws.send(msgspec.json.encode({"id": 1, "cmd": "join_group",
                                               "GroupId": group_id}))
            await ws.recv()
            body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * 11_000}}]
            deadline = time.monotonic() + 60
            sent = 0
            while tcp_state(sock) == TCP_ESTABLISHED:  # then no longer read at all
                assert time.monotonic() < deadline, "the server kept the connection open"
                if sent < 2000:
                    await tim.ok("group_open_http_svc/send_group_msg", {
                        "GroupId": group_id, "Random": sent, "MsgBody": body,
                        "MsgPriority": "High"})
                    sent += 1
                else:
                    await asyncio.sleep(0.1)
        assert "dropped connection" in server.output() or "closing connection" in \
            server.output()
