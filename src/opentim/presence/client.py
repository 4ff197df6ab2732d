"""The Redis client for a ``--redis`` URL: one Redis server, or a Redis Cluster.

``redis://host:port`` may name a standalone Redis or any node of a Redis Cluster: at
start-up ``open_redis`` asks that node (``INFO cluster``: ``cluster_enabled:1``) and builds
``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` (which reads the cluster's
layout from the node and routes each command to the master of its key's slot). Every
OpenTIM component that talks to Redis (presence, leases, the connection registry, the
room relay, the send guards) gets its client here; the rest of the code uses the
commands both clients offer and never asks which one it has.

What still differs is kept here, in two helpers:

- ``script_then``: a script, then a few commands that must run after it (on one Redis
  one pipelined round trip; on a cluster two, since a cluster pipeline cannot carry
  EVALSHA);
- ``in_order``: batches of commands where each batch must have run before the next is
  sent (on one Redis one pipeline, executed in order; on a cluster one pipeline per
  batch, because a cluster pipeline sends to each node at once, in no particular order).

Every multi-key command and script OpenTIM sends touches keys of one hash slot (see the
key layouts in ``presence.redis`` and ``presence.connections``); commands on keys of
different slots only ever travel together in non-transactional pipelines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

AnyRedis: TypeAlias = "aioredis.Redis | RedisCluster"
Queue: TypeAlias = Callable[[Any], object]  # queues commands on the pipeline it is given

# The failures that mean "Redis is unreachable or not answering" (not a bad command). On
# a cluster also: the cluster is down (CLUSTERDOWN, e.g. a master lost and not yet
# replaced) or no node of it could be reached (redis-py's cluster client raises its own
# RedisClusterException, caused by the ConnectionError).
UNREACHABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ClusterDownError,
    redis_errors.RedisClusterException)

# Connection options of redis.asyncio.Redis that RedisCluster does not take.
_STANDALONE_ONLY = frozenset({"retry_on_timeout"})

# Commands in flight at once, per client. redis-py 8's pools open at most 100 connections
# and then fail a command at once (MaxConnectionsError) instead of waiting; a burst of
# gateway connections opening or closing together (each one filed in Redis) went past
# that, and a failed write of a node's own connections costs a resync (every connection
# of the process closed, 4009). So a single Redis gets a pool of POOL_SIZE connections
# where a command waits up to POOL_WAIT seconds for a free one (then fails as
# unreachable), and a cluster, whose client cannot wait, may open up to
# CLUSTER_POOL_SIZE per master.
POOL_SIZE = 200
POOL_WAIT = 10.0
CLUSTER_POOL_SIZE = 1000


class _Cluster(RedisCluster):
    """redis-py's cluster client, retrying what OpenTIM's standalone client retries.

    It retries a failed command after re-reading the cluster's layout (that is how it
    follows a failover) on connection errors, CLUSTERDOWN and uncovered slots, as many
    times as its ``retry`` allows; OpenTIM passes one retry. A timeout is never retried:
    the command may have run (a join or a leave must not be applied twice). (Its
    pipelines keep redis-py's own list: OpenTIM pipelines only HSET / HDEL, ZADD, INCR
    with PEXPIRE, which a repeat leaves as they were or, for a rate counter, one higher.)
    """

    ERRORS_ALLOW_RETRY = (redis_errors.ConnectionError,  # type: ignore[assignment]
                          redis_errors.ClusterDownError, redis_errors.SlotNotCoveredError)


async def _cluster_enabled(client: aioredis.Redis) -> bool:
    try:
        info = await client.info("cluster")
    except redis_errors.ResponseError:  # INFO refused (ACL, a proxy): not a cluster node
        return False
    return bool(int(info.get("cluster_enabled", 0) or 0))


async def open_redis(url: str, **options: Any) -> AnyRedis:
    """A client for ``url``: ``RedisCluster`` when the node there has cluster mode on,
    else ``Redis``. ``options`` are connection options of ``redis.asyncio.Redis``
    (``client_name``, timeouts, ``retry``...); a cluster gets those it takes, one
    connection pool per master. Raises what the first command raises when the node is
    unreachable (nothing is left open then)."""
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_WAIT, **options))
    try:
        clustered = await _cluster_enabled(client)
    except BaseException:
        await client.aclose()
        raise
    if not clustered:
        return client
    await client.aclose()
    cluster = _Cluster.from_url(url, max_connections=CLUSTER_POOL_SIZE,
                                **{k: v for k, v in options.items()
                                   if k not in _STANDALONE_ONLY})
    try:
        await cluster.initialize()  # reads the slots; fails at once on a partial cluster
    except BaseException:
        await cluster.aclose()
        raise
    return cluster


async def script_then(client: AnyRedis, script: AsyncScript, keys: Sequence[Any],
                      args: Sequence[Any], then: Queue) -> Any:
    """Run ``script``, then the commands ``then`` queues on a pipeline; the script's reply.

    One Redis: one round trip, EVALSHA queued directly (redis-py's Script-in-pipeline
    would add a SCRIPT EXISTS round trip per call) and NOSCRIPT (Redis restarted) handled
    here by loading the script and sending the pipeline again, so the commands must be
    idempotent (they ran once without the script). A cluster: the script on its slot's
    master (redis-py reloads it on NOSCRIPT), then the commands.
    """
    if isinstance(client, RedisCluster):
        reply = await script(keys=list(keys), args=list(args))
        after = client.pipeline(transaction=False)
        then(after)
        await after.execute()
        return reply
    for attempt in (0, 1):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        then(pipe)
        try:
            return (await pipe.execute())[0]
        except redis_errors.NoScriptError:
            if attempt:
                raise
            script.sha = await client.script_load(script.script)
    raise AssertionError("unreachable")


async def in_order(client: AnyRedis, *steps: Queue) -> list[Any]:
    """The replies of the commands each step queues, a step's commands sent only once the
    previous step's have run (a crash in between leaves the first steps done). One
    Redis: one pipeline (it executes in order). A cluster: a pipeline per step, each
    spread over the masters of its keys."""
    if isinstance(client, RedisCluster):
        out: list[Any] = []
        for step in steps:
            batch = client.pipeline(transaction=False)
            step(batch)
            if len(batch):
                out += await batch.execute()
        return out
    pipe = client.pipeline(transaction=False)
    for step in steps:
        step(pipe)
    return list(await pipe.execute()) if len(pipe) else []
