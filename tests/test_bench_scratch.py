"""bench/scratch.py against the real PostgreSQL and Redis: the bench takes, clears and
drops only databases it verified as its own (issue 11, item 14)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.helpers import PG_URL, REDIS_URL, unavailable

BENCH = Path(os.environ.get("OPENTIM_BENCH_DIR", "")
             or Path(__file__).resolve().parents[1] / "bench")
sys.path.insert(0, str(BENCH))
import scratch  # noqa: E402

# The servers the rest of the suite uses, without their database part.
PG = make_url(PG_URL).set(database="").render_as_string(hide_password=False).rstrip("/")
REDIS = make_url(REDIS_URL).set(database="").render_as_string(hide_password=False).rstrip("/")


def in_child(code: str) -> None:
    """Run scratch code in a process that then exits: its claims are a dead run's."""
    subprocess.run([sys.executable, "-c", f"import asyncio, scratch; {code}"], cwd=BENCH,
                   check=True, timeout=60)


async def pg_exists(name: str) -> bool:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_db() -> Iterator[str]:
    try:
        asyncio.run(pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("PostgreSQL", f"{PG}: {exc}")
    name = f"opentim_scratch_test_{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_db() -> Iterator[tuple[str, redis.Redis]]:
    """An empty Redis database (14 down to 1) for this test, emptied again afterwards of
    exactly the keys the test wrote."""
    try:
        redis.Redis.from_url(f"{REDIS}/0", socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{REDIS}: {exc}")
    for db in range(14, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.dbsize() == 0:
            break
        client.close()
    else:
        unavailable("Redis", "no empty database 1-14 to test in")
    yield f"{REDIS}/{db}", client
    keys = [k for k in client.scan_iter(match="*") if k.startswith((b"opentim", b"t11:"))]
    if keys:
        client.delete(*keys)
    client.close()


def test_pg_creates_marks_and_drops_its_own(pg_db: str) -> None:
    url = f"{PG}/{pg_db}"
    asyncio.run(scratch.create_pg(url))
    assert asyncio.run(pg_exists(pg_db))
    assert asyncio.run(scratch.drop_pg(url)) is True
    assert not asyncio.run(pg_exists(pg_db))


def test_pg_refuses_and_keeps_a_database_that_is_not_the_benchs(pg_db: str) -> None:
    asyncio.run(pg_admin(f'CREATE DATABASE "{pg_db}"'))
    with pytest.raises(scratch.Refused, match="not a bench database"):
        asyncio.run(scratch.create_pg(f"{PG}/{pg_db}"))
    assert asyncio.run(scratch.drop_pg(f"{PG}/{pg_db}")) is False
    assert asyncio.run(pg_exists(pg_db))


def test_pg_takes_over_a_dead_bench_runs_leftover(pg_db: str) -> None:
    url = f"{PG}/{pg_db}"
    in_child(f"asyncio.run(scratch.create_pg({url!r}))")
    assert asyncio.run(scratch.drop_pg(url)) is False  # not ours yet: left alone
    asyncio.run(scratch.create_pg(url))
    assert asyncio.run(scratch.drop_pg(url)) is True


def test_pg_refuses_a_live_bench_runs_database(pg_db: str) -> None:
    url = f"{PG}/{pg_db}"
    asyncio.run(scratch.create_pg(url))  # marked by this process, alive
    other = subprocess.run([sys.executable, "-c", "import asyncio, scratch; "
                            f"asyncio.run(scratch.create_pg({url!r}))"], cwd=BENCH,
                           capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "still running" in other.stderr
    assert asyncio.run(scratch.drop_pg(url)) is True


def test_redis_refuses_a_non_empty_database_and_touches_nothing(
        redis_db: tuple[str, redis.Redis]) -> None:
    url, client = redis_db
    client.set("t11:someone", "data")
    client.set("opentim:nodes", "theirs")  # even keys shaped like OpenTIM's
    with pytest.raises(scratch.Refused, match="no bench claim"):
        scratch.claim_redis(url, 60)
    assert scratch.release_redis(url) is None
    assert client.get("t11:someone") == b"data" and client.get("opentim:nodes") == b"theirs"
    assert client.get(scratch.CLAIM) is None


def test_redis_claims_an_empty_database_and_clears_only_its_own(
        redis_db: tuple[str, redis.Redis]) -> None:
    url, client = redis_db
    _, how = scratch.claim_redis(url, 60)
    assert how == "it was empty"
    assert client.get(scratch.CLAIM) == scratch.run_id().encode()
    assert 0 < client.ttl(scratch.CLAIM) <= 60
    client.set("opentim:{1:g}:x", "1")
    client.set(f"opentim_bench_{os.getpid()}:{{raw}}:ord", "1")
    assert scratch.release_redis(url) == 2
    assert client.dbsize() == 0


def test_redis_takes_over_a_dead_runs_database_only_if_all_keys_are_bench_keys(
        redis_db: tuple[str, redis.Redis]) -> None:
    url, client = redis_db
    in_child(f"scratch.claim_redis({url!r}, 60)")
    client.set("opentim:nodes", "left")
    client.set("t11:foreign", "keep")
    with pytest.raises(scratch.Refused, match="other keys"):
        scratch.claim_redis(url, 60)
    assert client.get("opentim:nodes") == b"left" and client.get("t11:foreign") == b"keep"
    client.delete("t11:foreign")
    _, how = scratch.claim_redis(url, 60)
    assert "dead bench run" in how and "1 keys unlinked" in how
    assert client.get("opentim:nodes") is None
    assert scratch.release_redis(url) == 0
    assert client.dbsize() == 0


def test_redis_refuses_a_live_runs_claim(redis_db: tuple[str, redis.Redis]) -> None:
    url, client = redis_db
    client.set(scratch.CLAIM, f"{scratch.socket.gethostname()}:{os.getppid()}")
    with pytest.raises(scratch.Refused, match="may still be running"):
        scratch.claim_redis(url, 60)
    client.set(scratch.CLAIM, "otherhost:1")  # another host: liveness unknown
    with pytest.raises(scratch.Refused, match="may still be running"):
        scratch.claim_redis(url, 60)
    assert scratch.release_redis(url) is None
    assert client.get(scratch.CLAIM) == b"otherhost:1"
    client.delete(scratch.CLAIM)


def test_shown_masks_passwords() -> None:
    assert scratch.shown("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert scratch.shown("redis://:secret@h:6379/3") == "redis://:***@h:6379/3"
    assert scratch.shown("redis://h:6379/3") == "redis://h:6379/3"
