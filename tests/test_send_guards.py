"""The send guards (duplicates, rates, remembered values) on memory and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from opentim.messaging.guards import MemoryGuards, RedisGuards, SendGuards
from tests.helpers import REDIS_URL, drop_redis_keys, require_redis


@pytest.fixture(params=["memory", "redis"])
async def guards(request: pytest.FixtureRequest) -> AsyncIterator[SendGuards]:
    if request.param == "memory":
        yield MemoryGuards()
        return
    await require_redis(REDIS_URL)
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    redis_guards = RedisGuards(REDIS_URL, prefix)
    try:
        yield redis_guards
    finally:
        await redis_guards.close()
        await drop_redis_keys(REDIS_URL, prefix)


async def test_remembered_values_are_returned_once_by_pop(guards: SendGuards) -> None:
    assert await guards.remember_first("k", "first", 60) is None
    assert await guards.remember_first("k", "second", 60) == "first"
    await guards.update("k", "done", 60)
    assert await guards.pop("k") == "done"
    assert await guards.pop("k") is None  # gone: the next send with it is a new one
    assert await guards.remember_first("k", "again", 60) is None


async def test_a_window_counts_to_its_limit(guards: SendGuards) -> None:
    taken = [await guards.take("rate", 3, 3600.0) for _ in range(5)]
    assert taken == [True, True, True, False, False]
