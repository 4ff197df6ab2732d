"""What a group's connections are pushed: coalesced batches, on every server process.

Coalescing runs on both presence backends; relaying between processes needs Redis and
runs two servers that share one database and one Redis, as two processes would.
"""

from __future__ import annotations

import asyncio
import itertools
import re

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from opentim.client import GatewayError
from tests.helpers import (
    LiveServer,
    create_group,
    import_accounts,
    live_server,
    live_servers,
    members,
    modify,
    next_event,
    sessions,
)
from tests.helpers.redis_cluster import node_urls

AV = "group_open_avchatroom_http_svc"


async def test_mark_changes_are_coalesced_with_the_latest_marks(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    viewers = [f"v{i}" for i in range(10)]
    wanted = {v: [1000 + i % 3] for i, v in enumerate(viewers)}
    async with live.client(app) as tim:
        await import_accounts(tim, "host", *viewers)
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
        async with sessions(live, app, ["host", *viewers], group_id) as (host, *_):
            # 11 calls in quick succession: mark each viewer, then unmark one again
            for viewer in viewers:
                await modify(tim, group_id, 1, (viewer, wanted[viewer]))
            await modify(tim, group_id, 2, ("v0", wanted["v0"]))
            frames: list[dict] = []
            latest: dict[str, list[int]] = {}
            while latest != {**wanted, "v0": []}:
                frame = await next_event(host, "marks_changed")
                assert set(frame) == {"event", "GroupId", "MemberList", "EventTime"}
                frames.append(frame)
                latest.update((m["Member_Account"], m["Marks"]) for m in frame["MemberList"])
    assert len(frames) < 11  # fewer frames than calls: coalesced
    gaps = [b["EventTime"] - a["EventTime"] for a, b in itertools.pairwise(frames)]
    assert all(gap >= 950 for gap in gaps), gaps  # ms, server-side flush times


async def test_a_member_going_offline_drops_its_pending_marks(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "host", "u0", "u1")
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
        async with live.connect(app, "host") as host, live.connect(app, "u1") as u1:
            await host.join_group(group_id)
            await u1.join_group(group_id)
            await modify(tim, group_id, 1, ("u1", [1001]))  # flushed at once: a quiet room
            assert (await next_event(host, "marks_changed"))["MemberList"] == [
                {"Member_Account": "u1", "Marks": [1001]}]
            async with live.connect(app, "u0") as u0:
                await u0.join_group(group_id)
                await modify(tim, group_id, 1, ("u0", [1000]), ("u1", [1000]))
            # u0 left within the same batch: it is reported offline, its marks are not
            frame = await next_event(host, "marks_changed")
            assert frame["MemberList"] == [{"Member_Account": "u1", "Marks": [1000, 1001]}]


# --- several processes sharing Redis (a single Redis, and a Redis Cluster) -------------------


@pytest.fixture
async def pair(tmp_path, shared_redis: str):  # type: ignore[no-untyped-def]
    async with live_servers(2, f"sqlite:///{tmp_path}/shared.db", redis=shared_redis) as servers:
        app = await servers[0].new_app(rate_limit=0)
        for server in servers[1:]:
            await server.runtime.apps.refresh()
        yield servers, app


async def test_changes_made_through_one_process_reach_connections_of_another(pair) -> None:
    (a, b), app = pair
    async with a.client(app) as tim_a, b.client(app) as tim_b:
        await import_accounts(tim_a, "host", "guest")
        group_id = await create_group(tim_a, "AVChatRoom", Owner_Account="host")
        async with a.connect(app, "host") as host:
            await host.join_group(group_id)
            # the joining connection is in the room when its join is announced
            assert (await next_event(host, "members_changed"))["Online"] == ["host"]
            async with b.connect(app, "guest") as guest:
                await guest.join_group(group_id)
                assert (await next_event(host, "members_changed"))["Online"] == ["guest"]
                await modify(tim_b, group_id, 1, ("guest", [1000]))
                for session in (host, guest):
                    frame = await next_event(session, "marks_changed")
                    assert frame["MemberList"] == [{"Member_Account": "guest", "Marks": [1000]}]
                # and back: a's call reaches b's connection
                await tim_a.ok(f"{AV}/add_robots", {"GroupId": group_id,
                                                    "Member_Account": ["host"]})
                frame = await next_event(guest, "marks_changed")
                assert frame["MemberList"] == [{"Member_Account": "host", "Marks": [500]}]
            assert (await next_event(host, "members_changed"))["Offline"] == ["guest"]


async def test_removals_through_one_process_reach_connections_of_another(pair) -> None:
    (a, b), app = pair
    async with a.client(app) as tim_a, b.client(app) as tim_b:
        await import_accounts(tim_a, "u1", "u2")
        community = await create_group(tim_a, "Community", MemberList=[
            {"Member_Account": "u1"}, {"Member_Account": "u2"}])
        live_room = await create_group(tim_a, "AVChatRoom")
        async with a.connect(app, "u1") as kicked, a.connect(app, "u2") as stays:
            for session in (kicked, stays):
                await session.join_group(community)
                await session.join_group(live_room)
            await tim_b.ok("group_open_http_svc/delete_group_member",
                           {"GroupId": community, "MemberToDel_Account": ["u1"]})
            event = await next_event(kicked, "removed_from_group")
            assert event == {"event": "removed_from_group", "GroupId": community,
                             "Reason": "Kicked"}
            # a took the kicked connection out of the online list before telling it
            assert [r["Member_Account"] for r in (await members(tim_b, community))[0]] == ["u2"]
            await tim_b.ok("group_open_http_svc/destroy_group", {"GroupId": live_room})
            for session in (kicked, stays):
                event = await next_event(session, "removed_from_group")
                assert event["GroupId"] == live_room and event["Reason"] == "GroupDestroyed"
            # a forgot the dismissed group at once: no 2 s window of joining it
            with pytest.raises(GatewayError) as refused:
                await stays.join_group(live_room)
            assert refused.value.code == 10010


async def test_the_relay_resubscribes_after_losing_its_redis_connection(pair) -> None:
    (a, b), app = pair
    async with a.client(app) as tim_a:
        await import_accounts(tim_a, "host", "guest")
        group_id = await create_group(tim_a, "AVChatRoom", Owner_Account="host")
        relay_a = []
        for url in await node_urls(str(a.runtime.settings.redis)):  # each cluster node
            client = aioredis.Redis.from_url(url)
            try:
                clients = await client.client_list()
                # every connection of a's relay: its subscription and its publishing pool
                mine = [c for c in clients if c["name"] == f"opentim-relay-{a.runtime.node_id}"]
                for found in mine:
                    await client.client_kill_filter(_id=found["id"])
                relay_a += mine
            finally:
                await client.aclose()
        assert relay_a
        async with a.connect(app, "host") as host:
            await host.join_group(group_id)
            deadline = asyncio.get_running_loop().time() + 10
            seen: list[str] = []
            while "guest" not in seen:  # b's joins reach a again once it resubscribed
                async with b.connect(app, "guest") as guest:
                    await guest.join_group(group_id)
                    try:
                        seen += (await next_event(host, "members_changed", timeout=1.5))["Online"]
                    except TimeoutError:
                        assert asyncio.get_running_loop().time() < deadline, "never resubscribed"


async def test_a_client_that_does_not_read_its_pushes_is_closed(presence_backend,
                                                                tmp_path) -> None:
    # A client that stops reading: its socket fills, then 256 KiB wait in its outbox, and
    # it is closed (4010) rather than buffered further. High-priority messages are never
    # shed, so it is the backlog limit that ends it.
    async with live_server(f"sqlite:///{tmp_path}/slow.db", presence_backend,
                           push_backlog_bytes=256 << 10, metrics_port=0) as live:
        app = await live.new_app(rate_limit=0, group_msg_rate=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "host", "guest")
            group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
            rooms = live.asgi.state.rooms
            async with live.raw_connect(app, "host", receive_buffer=1 << 16) as host, \
                    live.connect(app, "guest") as guest:
                await host.send(msgspec.json.encode({"id": 1, "cmd": "join_group",
                                                     "GroupId": group_id}))
                assert msgspec.json.decode(await host.recv())["ErrorCode"] == 0
                await guest.join_group(group_id)
                body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * 11_000}}]
                sent = 0
                while not rooms.slow_clients_closed:
                    await tim.ok("group_open_http_svc/send_group_msg", {
                        "GroupId": group_id, "Random": sent, "MsgBody": body,
                        "MsgPriority": "High"})
                    sent += 1
                    assert sent < 3000, "the client was never closed"
                # When it reads again, what it reads ends with the close. (One that never
                # reads again is dropped after gateway_write_timeout: test_gateway_hardening.)
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(30):
                        while True:
                            await host.recv()
                assert host.close_code == 4010
                async with asyncio.timeout(5):  # it left the group as it closed
                    while "host" in [r["Member_Account"]
                                     for r in (await members(tim, group_id))[0]]:
                        await asyncio.sleep(0.05)
                for _ in range(sent):  # the reading one got every message
                    await guest.next_message()
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{live.asgi.state.metrics_url}/metrics")).text
        closed = re.search(r"^opentim_gateway_slow_clients_closed_total (\d+)$", text, re.M)
        assert closed and int(closed.group(1)) >= 1, text
