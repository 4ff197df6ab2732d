"""The scratch PostgreSQL and Redis databases of a bench run: taken only when provably its own.

The bench writes freely into these databases and deletes what is in them at the end, so it
must never take one holding someone else's data. A database counts as the bench's when it
carries the bench's mark naming the run that owns it (``<host>:<pid>``):

- PostgreSQL: the database named in the URL is made with CREATE DATABASE (which fails when
  it exists) and marked with ``COMMENT ON DATABASE``. It is dropped only while the comment
  still names this run. An existing database is refused, unless its comment names a bench
  run on this host that is no longer running (a killed run's leftover): that one is dropped
  and made afresh.
- Redis: the database (the URL's ``/N``) is claimed by setting the key ``CLAIM``, in one
  Lua script that does so only when the database is empty; or when the claim names a dead
  bench run on this host and every key in it is of a bench shape (``BENCH_KEYS``). Keys
  are only unlinked by those shapes, and only while the claim names this run; nothing here
  runs FLUSHDB or FLUSHALL.

Another run (pid alive, or on another host: its liveness cannot be checked from here) keeps
its database until it ends or its claim expires (Redis: the TTL given at claim time).
"""

from __future__ import annotations

import fnmatch
import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

CLAIM = "opentim_bench_owner"
MARK = "opentim bench scratch database; owner "
# What bench runs write: `opentim serve` (key prefix "opentim"), bench/clients.py
# (prefix opentim_bench_<pid>) and the claim itself.
BENCH_KEYS = ("opentim:*", "opentim_bench_*")


class Refused(Exception):
    """The database exists and is not provably this bench's: nothing in it was touched."""


def run_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_dead(owner: str) -> bool:
    """True only for a run on this host whose process is gone; anything else may be alive."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def shown(url: str) -> str:
    """The URL with its password (if any) masked, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_name(url: str) -> str:
    name = make_url(url).database
    if not name or "\0" in name or len(name.encode()) > 63:
        raise ValueError(f"{shown(url)}: the URL must name the bench's database "
                         "(…/opentim_bench; at most 63 bytes)")
    return name


def pg_describe(url: str) -> str:
    u = make_url(url)
    return (f'database "{pg_name(url)}" on {u.host or "localhost"}:{u.port or 5432} as '
            f"{u.username or '(default user)'}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _admin(url: str) -> Any:
    """A connection to the server's maintenance database (postgres, else template1)."""
    u = make_url(url).set(drivername="postgresql")
    try:
        return await asyncpg.connect(u.set(database="postgres").render_as_string(False),
                                     timeout=5)
    except asyncpg.InvalidCatalogNameError:
        return await asyncpg.connect(u.set(database="template1").render_as_string(False),
                                     timeout=5)


async def _mark(admin: Any, name: str) -> str | None:
    return await admin.fetchval(  # type: ignore[no-any-return]
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        name)


async def create_pg(url: str) -> str:
    """Create the URL's database and mark it as this run's; returns the server version.
    Raises Refused if it exists and is not a dead bench run's leftover."""
    name = pg_name(url)
    admin = await _admin(url)
    try:
        try:
            await admin.execute(f"CREATE DATABASE {_ident(name)}")
        except asyncpg.DuplicateDatabaseError:
            mark = await _mark(admin, name) or ""
            if not (mark.startswith(MARK) and owner_dead(mark.removeprefix(MARK))):
                why = (f"it belongs to bench run {mark.removeprefix(MARK)}, still running"
                       if mark.startswith(MARK) else "it is not a bench database")
                raise Refused(f"PostgreSQL {pg_describe(url)} exists and {why}: the bench "
                              "uses only a database it creates; name another with --pg-url "
                              "(or OPENTIM_BENCH_POSTGRES_URL)") from None
            await admin.execute(f"DROP DATABASE {_ident(name)} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {_ident(name)}")
        try:  # CREATE DATABASE cannot share a transaction with the COMMENT
            await admin.execute(f"COMMENT ON DATABASE {_ident(name)} IS "
                                f"{_literal(MARK + run_id())}")
        except BaseException:
            # Unmarked, it would be refused as someone else's by every later run.
            await admin.execute(f"DROP DATABASE {_ident(name)}")
            raise
        return str(await admin.fetchval("SHOW server_version"))
    finally:
        await admin.close()


async def drop_pg(url: str) -> bool:
    """Drop the URL's database if it still carries this run's mark; False: left alone."""
    name = pg_name(url)
    admin = await _admin(url)
    try:
        if await _mark(admin, name) != MARK + run_id():
            return False
        await admin.execute(f"DROP DATABASE {_ident(name)} WITH (FORCE)")
        return True
    finally:
        await admin.close()


# --- Redis ----------------------------------------------------------------------------------

# KEYS[1]: the claim; ARGV: new owner, TTL (s), previous owner ('' = the database must be
# empty). Atomic, so no write can slip in between the check and the claim.
_CLAIM_LUA = """
if ARGV[3] == '' then
  if redis.call('DBSIZE') ~= 0 then return 0 end
elseif redis.call('GET', KEYS[1]) ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)


def redis_describe(url: str) -> str:
    kw = _redis(url).connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
    return f"database {kw.get('db', 0)} on {where}"


def _bench_key(key: bytes) -> bool:
    text = key.decode(errors="replace")
    return any(fnmatch.fnmatchcase(text, p) for p in BENCH_KEYS)


def _clear(client: Any) -> int:
    """Unlink the bench-shaped keys (not the claim) of a database this run holds."""
    keys = [k for p in BENCH_KEYS for k in client.scan_iter(match=p, count=1000)
            if k != CLAIM.encode()]
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i:i + 1000])
    return len(keys)


def claim_redis(url: str, ttl: int) -> tuple[str, str]:
    """Claim the URL's database for this run; returns (Redis version, how it was taken).
    Raises Refused when it holds anything not provably a dead bench run's."""
    client = _redis(url)
    try:
        version = "Redis " + str(client.info("server")["redis_version"])
        me, where = run_id(), redis_describe(url)
        advice = ("name an empty database with --redis-url redis://…/N (or "
                  "OPENTIM_BENCH_REDIS_URL), or --redis-url '' to skip Redis")
        owner = client.get(CLAIM)
        if owner is None:
            if not client.eval(_CLAIM_LUA, 1, CLAIM, me, ttl, ""):
                n = client.dbsize()
                raise Refused(f"Redis {where} holds {n} key{'s' if n != 1 else ''} and no "
                              f"bench claim: the bench uses only an empty database; {advice}")
            return version, "it was empty"
        previous = owner.decode(errors="replace")
        if not owner_dead(previous):
            raise Refused(f"Redis {where} is claimed by bench run {previous}, which may still "
                          f"be running (the claim expires by itself); {advice}")
        foreign = next((k for k in client.scan_iter(count=1000)
                        if k != CLAIM.encode() and not _bench_key(k)), None)
        if foreign is not None:
            raise Refused(f"Redis {where} was claimed by the dead bench run {previous} but "
                          f"also holds other keys (e.g. {foreign[:60]!r}); {advice}")
        if not client.eval(_CLAIM_LUA, 1, CLAIM, me, ttl, previous):
            raise Refused(f"Redis {where}: another run claimed it meanwhile; {advice}")
        return version, f"left by the dead bench run {previous}: {_clear(client)} keys unlinked"
    finally:
        client.close()


def release_redis(url: str) -> int | None:
    """Unlink this run's keys and its claim; None: the claim is not this run's (untouched)."""
    client = _redis(url)
    try:
        if client.get(CLAIM) != run_id().encode():
            return None
        gone = _clear(client)
        client.eval(_RELEASE_LUA, 1, CLAIM, run_id())
        return gone
    finally:
        client.close()
