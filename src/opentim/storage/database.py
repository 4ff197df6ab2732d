"""The database handle: engine, migrations, read and write connections.

What SQL the two dialects spell differently is in ``dialect.py`` (``Database.dialect``);
this module holds the connection-level differences: how reads run and how writes are
serialised.

SQLite (the embedded default) is a single-writer database: writes are serialised by an
asyncio lock in this process rather than left to fail with "database is locked", which is
why one SQLite file serves one server process. PostgreSQL serialises per group with
``SELECT … FOR UPDATE`` on the group row instead.

SQLite reads run inline, on the event loop's thread, through a plain (synchronous)
SQLAlchemy connection: aiosqlite hands every cursor step to a worker thread, and those
hops cost far more than the indexed reads themselves (see ``_InlineReader``).

PostgreSQL reads of prebuilt statements run on asyncpg's own pool, as SQL the SQLAlchemy
dialect compiled once per statement (see ``pg_reader``): SQLAlchemy's asyncio layer costs
several times the read itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from opentim.storage.dialect import MIGRATION_LOCK_KEY, Dialect, dialect_for
from opentim.storage.pg_reader import (
    PgReader,
    PgRow,
    Plan,
    asyncpg_codecs,
    is_prebuilt,
    keep_session,
    prebuilt,
)
from opentim.storage.pg_reader import plan as compile_plan
from opentim.storage.schema import metadata

DEFAULT_DB_URL = "sqlite:///./opentim.db"
_MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Map the URLs users write to the async drivers OpenTIM uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")


class Executor(Protocol):
    """What reads and writes use of a connection: ``AsyncConnection``, ``_InlineReader`` or
    ``PgReader``."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...


class _InlineReader:
    """A synchronous SQLite connection behind the async ``execute`` the store calls.

    Measured (``bench/run``, account_check on SQLite): aiosqlite's thread hops made a
    one-row read cost several hundred microseconds. In WAL mode a reader never waits for
    the writer, and OpenTIM's reads are indexed lookups, so running them on the loop's
    thread is cheaper than any hand-off. Results must be consumed inside the ``read()``
    block (every caller does).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.execute(statement, parameters)


class Database:
    def __init__(self, url: str, *, echo: bool = False, direct_reads: bool = True) -> None:
        """``direct_reads=False``: PostgreSQL reads all go through SQLAlchemy (the path the
        asyncpg reader must answer exactly like, which tests compare it with)."""
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), echo=echo, **_engine_args(url), **_JSON_CODEC
        )
        self.dialect: Dialect = dialect_for(self.engine.dialect.name)
        self.is_sqlite = self.dialect.name == "sqlite"
        self._direct = direct_reads and not self.is_sqlite
        # PostgreSQL reads skip BEGIN/ROLLBACK (two round trips); aiosqlite would instead
        # pay extra thread hops to switch modes.
        self._reader = self.engine if self.is_sqlite else \
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._inline: Engine | None = None
        self._write_lock = self.dialect.write_lock()
        # PostgreSQL: asyncpg's pool for prebuilt reads, opened on first use.
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._plans: dict[int, Plan | None] = {}
        # PostgreSQL reads that ran through SQLAlchemy rather than asyncpg (statements not
        # prebuilt, or with values SQLAlchemy must convert): a figure for tests and probes.
        self.fallback_reads = 0
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "checkout", _closed_is_dead)
        if self.is_sqlite and make_url(url).database not in (None, "", ":memory:"):
            # (an in-memory database exists per connection: it keeps the async reader)
            self._inline = create_engine(
                make_url(url).set(drivername="sqlite+pysqlite"), echo=echo,
                pool_size=2, max_overflow=8, **_JSON_CODEC)
            event.listen(self._inline, "connect", _sqlite_pragmas)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to call on every start, and from
        several processes at once).

        Two processes starting together on a new database would otherwise both see no
        ``alembic_version`` table and both create it (PostgreSQL: a duplicate key on its
        row type; SQLite: "table apps already exists"). So the whole upgrade runs in one
        transaction that first takes a database-wide lock: a transaction-level advisory
        lock on PostgreSQL, ``BEGIN IMMEDIATE`` (the write lock) on SQLite. The second
        process waits, then finds the schema at head and does nothing.
        """
        async with self.engine.connect() as conn:
            await self.dialect.lock_for_migration(conn)
            await conn.run_sync(_upgrade)
            await conn.commit()

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.dispose()
        if self._pool is not None:
            await self._pool.close()
        await self.engine.dispose()

    def read(self) -> contextlib.AbstractAsyncContextManager[Executor]:
        """A connection for reads: autocommit on PostgreSQL, inline on SQLite."""
        if self._direct:
            return PgReader(self)
        return self._read_sqlalchemy()

    @contextlib.asynccontextmanager
    async def _read_sqlalchemy(self) -> AsyncIterator[Executor]:
        if self._inline is not None:
            with self._inline.connect() as conn:
                yield _InlineReader(conn)
            return
        async with self._reader.connect() as conn:
            yield conn

    def compiled_plans(self) -> dict[int, Plan | None]:
        """The statements compiled for asyncpg so far, by ``id``: their plan, or None for
        a statement that runs through SQLAlchemy (a copy)."""
        return dict(self._plans)

    def _plan_for(self, statement: Any) -> Plan | None:
        """The asyncpg plan of a prebuilt statement; None: run it through SQLAlchemy."""
        if not is_prebuilt(statement):
            return None  # built per call: SQLAlchemy's own compiled cache serves it
        plan = self._plans[id(statement)] = compile_plan(statement, self.engine.dialect)
        return plan

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                _, connect = self.engine.dialect.create_connect_args(self.engine.url)
                # (options of SQLAlchemy's asyncpg adapter, not of asyncpg.connect)
                cache_size = connect.pop("prepared_statement_cache_size", None)
                if cache_size is not None:
                    connect["statement_cache_size"] = cache_size
                connect.pop("prepared_statement_name_func", None)
                connect.pop("async_fallback", None)
                connect.setdefault("timeout", CONNECT_TIMEOUT)  # asyncpg's default: 60 s
                self._pool = await asyncpg.create_pool(
                    **connect, min_size=0, max_size=READ_POOL_SIZE, record_class=PgRow,
                    init=asyncpg_codecs, reset=keep_session)
        return self._pool

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on any exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    def insert(self, table: Any) -> Insert:
        """An INSERT that supports ``on_conflict_do_nothing`` on either dialect."""
        return self.dialect.insert(table)

    def locking(self, stmt: Any) -> Any:
        """Row lock for read-then-write in a transaction (SQLite relies on the write lock)."""
        return self.dialect.locking(stmt)


# JSON columns (app-defined data, message bodies) through msgspec, which parsed them from
# the request in the first place: several times faster than the json module per value.
_JSON_CODEC: dict[str, Any] = {
    "json_serializer": lambda value: msgspec.json.encode(value).decode(),
    "json_deserializer": msgspec.json.decode,
}


# A server that never answers fails a start (or a request) in 10 s, not asyncpg's 60.
CONNECT_TIMEOUT = 10


def _engine_args(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {}
    # No pre-ping: it costs a round trip per checkout. A connection the server closed (a
    # restart, pg_terminate_backend) is known closed to asyncpg at once, and the checkout
    # hook (_closed_is_dead) replaces it for free; asyncpg's own read pool does the same.
    # Only statements in flight when the server went away fail (docs/reliability.md).
    return {"pool_size": 10, "max_overflow": 10, "pool_recycle": 3600,
            "connect_args": {"timeout": CONNECT_TIMEOUT}}


def _closed_is_dead(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection whose server end is gone (asyncpg saw it close) is
    replaced at checkout rather than failing the request that would use it: SQLAlchemy
    retries the checkout with a new connection. No round trip (unlike pool_pre_ping)."""
    conn = getattr(dbapi_conn, "_connection", None)  # the adapted asyncpg connection
    if conn is not None and conn.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")


# Reads hold a connection for one short block; SQLAlchemy's pool (writes) keeps its own.
READ_POOL_SIZE = 10


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # First, so that the pragmas below (WAL needs a lock once, on a new file) and the
    # migration lock wait for another process instead of failing at once.
    cursor.execute("PRAGMA busy_timeout=10000")
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
    # (only an OS crash may lose the last commits), the trade the embedded default makes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _upgrade(sync_conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


__all__ = ["DEFAULT_DB_URL", "MIGRATION_LOCK_KEY", "READ_POOL_SIZE", "Database", "async_url",
           "metadata", "prebuilt"]
