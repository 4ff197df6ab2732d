"""Fixtures for the presence contract suite: the same tests run on every backend.

``backend`` is parametrized over "memory", "redis" and "redis-cluster" (the same Redis
store on the session's local 3-master Redis Cluster, see tests/helpers/redis_cluster.py);
``redis_backend`` over the last two. The Redis ones use a unique key prefix per test and
unlink every key under it afterwards; when Redis (or the cluster) is unavailable they
skip, unless ``OPENTIM_REQUIRE_SERVICES=1`` makes that a failure.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

# src layout: make `opentim` importable even when the package isn't installed.
if importlib.util.find_spec("opentim") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from opentim.presence import MemoryPresenceStore, PresenceStore
from tests.helpers import REDIS_URL, redis_client_or_skip, unavailable

T0 = 1_700_000_000.0  # the fake "now" the tests start from


async def _redis_client_or_skip() -> Any:
    return await redis_client_or_skip(REDIS_URL)


async def _cluster_backend(request: pytest.FixtureRequest) -> RedisBackend:
    """A RedisBackend on the local cluster (a ``RedisCluster`` client, as production
    builds it for a cluster node's URL), or the test skips."""
    from opentim.presence.client import open_redis

    cluster = request.getfixturevalue("redis_cluster")
    if isinstance(cluster, str):
        unavailable("Redis Cluster", cluster)
    return RedisBackend(await open_redis(cluster.url), url=cluster.url, name="redis-cluster")


async def _redis_backend(request: pytest.FixtureRequest) -> RedisBackend:
    if request.param == "redis-cluster":
        return await _cluster_backend(request)
    return RedisBackend(await _redis_client_or_skip())


class MemoryBackend:
    name = "memory"
    url: str | None = None
    factory_options: dict[str, Any] = {"background": False}  # noqa: RUF012

    async def make(self, **kwargs: Any) -> PresenceStore:
        # No background sweep: the tests drive ``sweep`` with their fake clock.
        store = MemoryPresenceStore(**{"background": False, **kwargs})
        await store.start()
        return store

    async def cleanup(self) -> None:
        return None


class RedisBackend:
    """Stores sharing one client and one unique prefix; background tasks off, fake clock."""

    def __init__(self, client: Any, url: str = REDIS_URL, name: str = "redis") -> None:
        self.client = client
        self.name = name
        self.prefix = f"opentim-test-{uuid.uuid4().hex}"
        self.stores: list[Any] = []
        self.url = url
        self.factory_options = {"prefix": self.prefix, "background": False}

    async def make(self, **kwargs: Any) -> PresenceStore:
        from opentim.presence.redis import RedisPresenceStore

        opts: dict[str, Any] = {
            "node_id": f"node-{uuid.uuid4().hex[:8]}",
            "prefix": self.prefix,
            "clock": lambda: T0,
            "background": False,
        }
        opts.update(kwargs)
        store = RedisPresenceStore(self.client, **opts)
        await store.start()
        self.stores.append(store)
        return store

    async def keys(self) -> list[bytes]:
        return [k async for k in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]

    async def cleanup(self) -> None:
        for store in self.stores:
            await store.close()
        keys = await self.keys()
        if keys:
            await self.client.unlink(*keys)
        await self.client.aclose()


@pytest_asyncio.fixture(loop_scope="function", params=["memory", "redis", "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    b: Any
    if request.param == "memory":
        b = MemoryBackend()
    else:
        b = await _redis_backend(request)
    try:
        yield b
    finally:
        await b.cleanup()


@pytest_asyncio.fixture(loop_scope="function")
async def store(backend: Any) -> PresenceStore:
    return await backend.make()


@pytest_asyncio.fixture(loop_scope="function")
async def cluster_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    """The Redis store on the local cluster only (slot layout, client selection)."""
    b = await _cluster_backend(request)
    try:
        yield b
    finally:
        await b.cleanup()


@pytest_asyncio.fixture(loop_scope="function", params=["redis", "redis-cluster"])
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    """Redis only, for the crash-recovery tests that have no memory counterpart."""
    b = await _redis_backend(request)
    try:
        yield b
    finally:
        await b.cleanup()
