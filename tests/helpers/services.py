"""The services tests need (PostgreSQL, Redis): where they are, and what to do when absent.

PostgreSQL and Redis tests skip with a reason when the service is unreachable; with
OPENTIM_REQUIRE_SERVICES=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pytest

# A database of this test run's own (dropped when the run ends, see conftest.py), so a run
# always migrates from nothing: a database left by an older checkout cannot hide a
# migration that differs from schema.py. OPENTIM_TEST_POSTGRES_URL names one to use as is.
PG_URL_GIVEN = "OPENTIM_TEST_POSTGRES_URL" in os.environ
PG_URL = os.environ.get("OPENTIM_TEST_POSTGRES_URL",
                        f"postgresql://postgres@127.0.0.1:5432/opentim_test_{os.getpid()}")
REDIS_URL = os.environ.get("OPENTIM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1"

# Fresh SDKAppIDs per test process: tests share one PostgreSQL database without cleaning
# up, and an app's rows are never seen by another app.
sdkappids = itertools.count(1_400_000_000 + (os.getpid() % 10_000) * 10_000 +
                            int(time.time()) % 10_000)


def unavailable(service: str, reason: str) -> None:
    """Skip the test (or fail it, with OPENTIM_REQUIRE_SERVICES=1): ``service`` is down."""
    message = f"{service} not reachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (OPENTIM_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def drop_pg_database(url: str) -> None:
    """Drop a test run's own database (connections to it are ended)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        conn = await asyncpg.connect(user=parsed.username, password=parsed.password,
                                     host=parsed.host, port=parsed.port,
                                     database="postgres", timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def ensure_pg_database(url: str) -> str | None:
    """Create the test database if needed; returns an error text when PG is unreachable."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        conn = await asyncpg.connect(user=parsed.username, password=parsed.password,
                                     host=parsed.host, port=parsed.port,
                                     database="postgres", timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{url}: {exc}"
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1",
                                     parsed.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await conn.close()
    return None


async def _redis_client(url: str) -> tuple[Any, str | None]:
    """(a connected client, None), or (None, why Redis is unreachable at ``url``)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # any connection failure means "not reachable"
        await client.aclose()
        return None, f"{url}: {exc}"
    return client, None


async def redis_reachable(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    client, problem = await _redis_client(url)
    if client is not None:
        await client.aclose()
    return problem


async def redis_client_or_skip(url: str = REDIS_URL) -> Any:
    """A connected ``redis.asyncio.Redis`` (bytes replies), or the test skips (or fails,
    with OPENTIM_REQUIRE_SERVICES=1): the one place tests decide Redis is unreachable."""
    client, problem = await _redis_client(url)
    if problem is not None:
        unavailable("Redis", problem)
    return client


async def require_redis(url: str = REDIS_URL) -> None:
    """Skip (or fail) unless Redis answers at ``url``."""
    await (await redis_client_or_skip(url)).aclose()


async def drop_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (on a Redis Cluster: on every master)."""
    from opentim.presence.client import open_redis

    client = await open_redis(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start:start + 500])
    finally:
        await client.aclose()
