"""Fixtures for the presence contract suite: the same tests run on every backend.

``backend`` is parametrized over "memory" and "redis". The Redis one uses a unique key
prefix per test and unlinks every key under it afterwards; when Redis is unreachable it
skips, unless ``OPENTIM_REQUIRE_SERVICES=1`` makes that a failure.
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
from tests.helpers import REDIS_URL, redis_client_or_skip

T0 = 1_700_000_000.0  # the fake "now" the tests start from


async def _redis_client_or_skip() -> Any:
    return await redis_client_or_skip(REDIS_URL)


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

    name = "redis"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"opentim-test-{uuid.uuid4().hex}"
        self.stores: list[Any] = []
        self.url = REDIS_URL
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


@pytest_asyncio.fixture(loop_scope="function", params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    b: Any
    if request.param == "memory":
        b = MemoryBackend()
    else:
        b = RedisBackend(await _redis_client_or_skip())
    try:
        yield b
    finally:
        await b.cleanup()


@pytest_asyncio.fixture(loop_scope="function")
async def store(backend: Any) -> PresenceStore:
    return await backend.make()


@pytest_asyncio.fixture(loop_scope="function")
async def redis_backend() -> AsyncIterator[RedisBackend]:
    """Redis only, for the crash-recovery tests that have no memory counterpart."""
    b = RedisBackend(await _redis_client_or_skip())
    try:
        yield b
    finally:
        await b.cleanup()
