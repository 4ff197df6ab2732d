"""The Redis store on a Redis Cluster: the client chosen for a URL, and key layouts that
keep every script and multi-key command in one hash slot. (The whole contract suite and
the Redis-only tests run on the cluster too, through the "redis-cluster" parameters.)"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from opentim.presence.client import in_order, open_redis, script_then
from tests.helpers import REDIS_URL, require_redis

from .conftest import T0

APP = 1400000001
G = "@TGS#aCLUSTER"


async def test_a_cluster_node_url_gets_the_cluster_client(cluster_backend: Any) -> None:
    assert isinstance(cluster_backend.client, RedisCluster)
    client = await open_redis(cluster_backend.url)
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
    finally:
        await client.aclose()


async def test_a_single_redis_url_gets_the_plain_client() -> None:
    await require_redis(REDIS_URL)
    client = await open_redis(REDIS_URL)
    try:
        assert not isinstance(client, RedisCluster)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_every_key_of_a_group_is_in_the_groups_slot(cluster_backend: Any) -> None:
    """Every kind of group key (online list, rows, counts, node index, marks, mark
    indexes, 500 expiries, interruptions, version) hashes to the slot of the group's tag,
    and the per-node / per-account keys each to the slot of theirs."""
    a = await cluster_backend.make(node_id="A")
    await a.add_connection(APP, "u1", "c1", platform="Web")
    await a.join(APP, G, "u1", "c1", nick="n", avatar="", now=T0)
    await a.join(APP, G, "u2", "c2", nick="", avatar="", now=T0)
    await a.leave(APP, G, "u2", "c2", now=T0, interrupted=True)
    await a.set_marks(APP, G, [("u1", [1000, 600])], now=T0)
    await a.add_robots(APP, G, ["bot"], now=T0)
    client: RedisCluster = cluster_backend.client
    keys = [k.decode() for k in await cluster_backend.keys()]
    tag = f"{{{APP}:{G}}}"
    group_keys = [k for k in keys if tag in k]
    kinds = {k.rsplit(tag, 1)[1].split(":")[1] for k in group_keys}
    assert kinds >= {"seq", "ord", "row", "nc", "n", "nodes", "am", "m", "marks", "x500",
                     "hbi", "ver"}
    slots = {client.keyslot(k) for k in group_keys}
    assert slots == {client.keyslot(f"opentim:{tag}")}
    for k in keys:  # everything else: one tag per node or account, or a single key
        if tag in k:
            continue
        assert "{" in k or k.endswith((":nodes", ":x500")), k


async def test_scripts_survive_a_flushed_script_cache(redis_backend: Any) -> None:
    """NOSCRIPT (a restarted or promoted master) is answered by loading the script again,
    on one Redis and on a cluster, for plain scripts and for a script with follow-ups
    (set_marks with mark 500, then its sweeper schedule)."""
    a = await redis_backend.make()
    await redis_backend.client.script_flush()  # on a cluster: on every master
    assert (await a.join(APP, G, "u1", "c1", nick="", avatar="", now=T0)).became_online
    await redis_backend.client.script_flush()
    await a.add_robots(APP, G, ["bot"], now=T0, ttl=10)
    assert await redis_backend.client.zscore(f"{redis_backend.prefix}:x500",
                                             f"{APP}:{G}") == T0 + 10
    assert await a.count(APP, G, now=T0) == 2


async def test_in_order_and_script_then_keep_their_order(redis_backend: Any) -> None:
    """Steps land in order across slots; a script's follow-ups land with it (on one Redis,
    after NOSCRIPT, the whole pipeline is sent again: follow-ups are idempotent)."""
    client = redis_backend.client
    p = redis_backend.prefix
    first, second = f"{p}:{{one}}", f"{p}:{{two}}"
    replies = await in_order(client, lambda pipe: pipe.rpush(first, "a"),
                             lambda pipe: pipe.lrange(first, 0, -1),
                             lambda pipe: pipe.rpush(second, "b"))
    assert replies == [1, [b"a"], 1]
    # not loaded yet: the first EVALSHA answers NOSCRIPT
    script = client.register_script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    for n in (2, 3):
        reply = await script_then(client, script, [first], ["c"],
                                  lambda pipe: pipe.sadd(f"{second}:set", "after"))
        assert reply == n
    assert await client.smembers(f"{second}:set") == {b"after"}
    assert await in_order(client) == []


def test_no_redis_server_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Any) -> None:
    """Without redis-server the helper says so (the fixture then skips with that reason,
    or fails with OPENTIM_REQUIRE_SERVICES=1)."""
    from tests.helpers.redis_cluster import ClusterUnavailable, LocalCluster

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterUnavailable, match="not installed"):
        LocalCluster.start()
