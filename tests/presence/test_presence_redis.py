"""Redis-only behaviour: crash recovery through node leases, background loops, scripts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from opentim.presence import RECOVER_WINDOW, Joined, Offline

from .conftest import T0
from .helpers import is_online

pytestmark = pytest.mark.asyncio(loop_scope="function")

APP = 1400000001
G = "@TGS#aLIVE"


async def join(s: Any, acc: str, conn: str, now: float = T0) -> bool:
    return (await s.join(APP, G, acc, conn, nick="", avatar="", now=now)).became_online


async def test_crashed_node_swept_by_another(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A", lease_ttl=15, release_on_close=False)
    b = await redis_backend.make(node_id="B", lease_ttl=15)
    await join(a, "u1", "a1")
    await join(a, "u2", "a2")
    await join(b, "u2", "b2")  # u2 is also connected through B
    await a.add_robots(APP, G, ["bot"], now=T0)
    await a.set_marks(APP, G, [("u1", [1000])], now=T0)
    # A never refreshes its lease (no background task): it "crashed".
    assert await b.sweep(T0 + 14) == []
    events = await b.sweep(T0 + 16)
    assert events == [Offline(APP, G, "u1", "node_lost")]
    for acc, online in (("u1", False), ("u2", True), ("bot", True)):
        assert await is_online(b, APP, G, acc, now=T0 + 16) is online
    assert await b.page(APP, G, cursor=0, mark=1000, now=T0 + 16) == await b.page(
        APP, G, cursor=0, mark=1001, now=T0 + 16
    )
    assert await b.sweep(T0 + 17) == []  # A is gone from the lease table
    assert not await redis_backend.client.exists(f"{redis_backend.prefix}:ng:{{A}}")
    assert await b.leave(APP, G, "u2", "b2", now=T0 + 20)


async def test_restarted_node_clears_its_leftovers(redis_backend: Any) -> None:
    old = await redis_backend.make(node_id="N", release_on_close=False)
    await join(old, "u1", "c1")
    await old.close()  # without release: as if it had crashed
    seen: list[Offline] = []

    async def on_offline(events: list[Offline]) -> None:
        seen.extend(events)

    new = await redis_backend.make(node_id="N", on_offline=on_offline)
    assert seen == [Offline(APP, G, "u1", "node_lost")]
    assert await new.count(APP, G, now=T0) == 0


async def test_graceful_close_takes_users_offline(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A")
    b = await redis_backend.make(node_id="B")
    await join(a, "u1", "c1")
    await a.close()
    assert await b.count(APP, G, now=T0) == 0
    nodes = await redis_backend.client.zrange(f"{redis_backend.prefix}:nodes", 0, -1)
    assert b"A" not in nodes


async def test_background_sweep_with_real_clock(redis_backend: Any) -> None:
    """A node whose lease is never refreshed is cleaned up by another node's loop."""
    seen: list[Offline] = []

    async def on_offline(events: list[Offline]) -> None:
        seen.extend(events)

    a = await redis_backend.make(
        node_id="A", clock=time.time, lease_ttl=0.3, release_on_close=False
    )
    await a.join(APP, G, "u1", "c1", nick="", avatar="", now=time.time())
    await redis_backend.make(
        node_id="B",
        clock=time.time,
        lease_ttl=0.3,
        refresh_interval=0.05,
        sweep_interval=0.05,
        background=True,
        on_offline=on_offline,
    )
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [Offline(APP, G, "u1", "node_lost")]


async def test_refreshed_lease_survives_and_lost_lease_is_reported(redis_backend: Any) -> None:
    lost = asyncio.Event()

    async def on_lease_lost() -> None:
        lost.set()

    a = await redis_backend.make(
        node_id="A",
        clock=time.time,
        lease_ttl=0.3,
        refresh_interval=0.05,
        sweep_interval=60,
        background=True,
        on_lease_lost=on_lease_lost,
    )
    b = await redis_backend.make(node_id="B", clock=time.time)
    await a.join(APP, G, "u1", "c1", nick="", avatar="", now=time.time())
    await asyncio.sleep(0.5)  # > lease_ttl: only the refresh keeps A alive
    assert await b.sweep(time.time()) == []
    assert not lost.is_set()
    # A sweeper with a clock far ahead declares A dead: A notices at its next refresh.
    events = await b.sweep(time.time() + 60)
    assert events == [Offline(APP, G, "u1", "node_lost")]
    await asyncio.wait_for(lost.wait(), 2)
    # A re-registered and keeps working
    assert (await a.join(APP, G, "u2", "c2", nick="", avatar="", now=time.time())).became_online
    assert await b.sweep(time.time()) == []


async def test_unknown_script_sha_is_reloaded(tmp_path: Any) -> None:
    """NOSCRIPT (Redis restarted or flushed) is recovered from, also on the pipelined path.

    On a Redis server of this test's own, so that SCRIPT FLUSH hits nobody else.
    """
    import shutil
    import socket
    import subprocess

    import redis.asyncio as aioredis

    from opentim.presence.redis import RedisPresenceStore
    from tests.helpers import unavailable

    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("Redis", "no redis-server binary to start a private server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:  # not listening yet
                await asyncio.sleep(0.05)
        s = RedisPresenceStore(client, node_id="n1", prefix="t", clock=lambda: T0,
                               background=False)
        await s.start()
        try:
            await client.script_flush()
            assert await join(s, "u1", "c1")
            await client.script_flush()
            res = await s.add_robots(APP, G, ["bot"], now=T0)  # EVALSHA + ZADD, pipelined
            assert res.went_online == ["bot"]
        finally:
            await s.close()
    finally:
        await client.aclose()
        server.terminate()
        server.wait(10)


async def test_mark500_sweep_schedule(redis_backend: Any) -> None:
    a = await redis_backend.make()
    await a.add_robots(APP, G, ["b1"], now=T0, ttl=10)
    await a.add_robots(APP, G, ["b2"], now=T0, ttl=20)
    key = f"{redis_backend.prefix}:x500"
    assert await redis_backend.client.zscore(key, f"{APP}:{G}") == T0 + 10
    assert await a.sweep(T0 + 5) == []
    assert await a.sweep(T0 + 10) == [Offline(APP, G, "b1", "mark500_expired")]
    assert await redis_backend.client.zscore(key, f"{APP}:{G}") == T0 + 20
    assert await a.sweep(T0 + 20) == [Offline(APP, G, "b2", "mark500_expired")]
    assert await redis_backend.client.zscore(key, f"{APP}:{G}") is None


async def test_leave_node_batches_large_groups(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A", release_on_close=False)
    b = await redis_backend.make(node_id="B")
    for i in range(2500):  # > one HSCAN batch
        await join(a, f"u{i}", f"c{i}")
    events = await b.sweep(T0 + 100)
    assert len({e.account for e in events}) == 2500
    assert await b.count(APP, G, now=T0 + 100) == 0


async def test_interruption_recovers_through_another_node(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A")
    b = await redis_backend.make(node_id="B")
    await join(a, "u1", "a1")
    assert await a.leave(APP, G, "u1", "a1", now=T0 + 1, interrupted=True)
    assert await b.join(APP, G, "u1", "b1", nick="", avatar="", now=T0 + 60) is Joined.RECOVERED


async def test_dead_node_users_are_remembered_as_interrupted(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A", lease_ttl=15, release_on_close=False)
    b = await redis_backend.make(node_id="B", lease_ttl=15)
    await join(a, "u1", "a1")
    await join(a, "u2", "a2")
    assert {e.account for e in await b.sweep(T0 + 16)} == {"u1", "u2"}
    assert await b.join(APP, G, "u1", "b1", nick="", avatar="", now=T0 + 20) is Joined.RECOVERED
    late = T0 + 16 + RECOVER_WINDOW + 1
    assert await b.join(APP, G, "u2", "b2", nick="", avatar="", now=late) is Joined.ONLINE


async def test_interruptions_are_trimmed_by_later_ones(redis_backend: Any) -> None:
    s = await redis_backend.make()
    key = f"{redis_backend.prefix}:{{{APP}:{G}}}:hbi"
    for i, now in enumerate((T0, T0 + 10, T0 + 10 + RECOVER_WINDOW)):
        await join(s, f"u{i}", f"c{i}", now=now)
        assert await s.leave(APP, G, f"u{i}", f"c{i}", now=now, interrupted=True)
    # u0 is older than the window when u2 is recorded; u1 is exactly at its edge
    assert await redis_backend.client.zrange(key, 0, -1) == [b"u1", b"u2"]


# --- gateway connections across nodes ----------------------------------------------------


async def test_connections_of_every_node_and_a_crashed_ones(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A", lease_ttl=15, release_on_close=False)
    b = await redis_backend.make(node_id="B", lease_ttl=60)
    await a.add_connection(APP, "u1", "a1", platform="iOS")
    await b.add_connection(APP, "u1", "b1", platform="Web")
    await a.add_connection(APP, "u2", "a2", platform="Web")
    found = await b.connections(APP, ["u1", "u2"], now=T0 + 14)
    assert sorted(found["u1"]) == ["Web", "iOS"] and found["u2"] == ["Web"]
    # A never refreshes its lease (it crashed): once the lease ran out its connections
    # no longer count, before any sweep,
    assert await b.connections(APP, ["u1", "u2"], now=T0 + 15) == {"u1": ["Web"]}
    # and a sweep removes them
    await b.sweep(T0 + 16)
    prefix, client = redis_backend.prefix, redis_backend.client
    assert not await client.exists(f"{prefix}:nc:{{A}}")
    assert await client.hkeys(f"{prefix}:uc:{{{APP}:u1}}") == [b"b1"]
    assert not await client.exists(f"{prefix}:uc:{{{APP}:u2}}")


async def test_connections_go_with_a_closed_or_restarted_node(redis_backend: Any) -> None:
    a = await redis_backend.make(node_id="A")
    await a.add_connection(APP, "u1", "a1", platform="Web")
    await a.close()  # graceful: they go at once
    old = await redis_backend.make(node_id="N", release_on_close=False)
    await old.add_connection(APP, "u2", "n1", platform="Web")
    await old.close()  # as if it had crashed
    new = await redis_backend.make(node_id="N")  # the same node id, restarted
    assert await new.connections(APP, ["u1", "u2"], now=T0) == {}
    assert [k for k in await redis_backend.keys() if b":uc:" in k or b":nc:" in k] == []


async def test_connections_are_filed_again_after_a_lost_lease(redis_backend: Any) -> None:
    lost = asyncio.Event()

    async def on_lease_lost() -> None:
        lost.set()

    a = await redis_backend.make(node_id="A", clock=time.time, lease_ttl=0.3,
                                 refresh_interval=0.05, sweep_interval=60, background=True,
                                 on_lease_lost=on_lease_lost)
    b = await redis_backend.make(node_id="B", clock=time.time)
    await a.add_connection(APP, "u1", "a1", platform="Web")
    await b.sweep(time.time() + 60)  # a sweeper far ahead declares A dead
    assert await b.connections(APP, ["u1"], now=time.time()) == {}
    await asyncio.wait_for(lost.wait(), 2)
    for _ in range(40):  # A files its connections again right after noticing
        if await b.connections(APP, ["u1"], now=time.time()):
            break
        await asyncio.sleep(0.05)
    assert await b.connections(APP, ["u1"], now=time.time()) == {"u1": ["Web"]}
