"""What SQLite and PostgreSQL do differently, behind one small interface.

The concept stores (``apps.py`` ... ``messages.py``) write their SQL once, in SQLAlchemy
Core, and ask the dialect object only for the parts the two databases spell differently:

- INSERT ... ON CONFLICT (``insert``),
- row locks for read-then-write (``locking``: ``FOR UPDATE`` on PostgreSQL; SQLite has one
  writer, serialised by ``write_lock``, so a read in a write transaction is already locked),
- the write lock itself (``write_lock``: an asyncio lock for SQLite, none for PostgreSQL),
- the migration lock (``lock_for_migration``),
- list-binding statements: membership checks and bulk member inserts bind each list of
  accounts as ONE parameter (a PostgreSQL array, a SQLite JSON text), see below.

Which read path a statement takes (inline on SQLite, asyncpg on PostgreSQL) is the
``Database``'s business, not the dialect's: see ``database.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgspec
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from opentim.storage.pg_reader import prebuilt

_encode_json = msgspec.json.Encoder().encode
# PostgreSQL advisory lock held while migrating (any constant; it names OpenTIM's lock among
# the database's advisory locks): "opentim!" as a big-endian int64.
MIGRATION_LOCK_KEY = int.from_bytes(b"opentim!", "big", signed=True)
# Bulk member inserts take these columns, in this order, one list (or JSON row) each.
_MEMBER_COLUMNS = ("sdkappid, group_id, member, role, join_time, msg_seq, msg_flag, "
                   "last_send_msg_time, shut_up_until, name_card")


class Dialect(Protocol):
    """One implementation per backend: ``SqliteDialect``, ``PostgresDialect``."""

    name: str

    def insert(self, table: Any) -> Insert:
        """An INSERT that supports ``on_conflict_do_nothing``."""
        ...

    def locking(self, stmt: Any) -> Any:
        """The statement, taking row locks for a read-then-write in a transaction."""
        ...

    def write_lock(self) -> asyncio.Lock | None:
        """A process-wide lock every write transaction holds, or None."""
        ...

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        """Take the database-wide lock a migration holds until its transaction ends."""
        ...

    def existing(self, app: int, accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        """Statement and parameters: which of ``accounts`` exist (one column)."""
        ...

    def member_exceptions(self, app: int, group_id: str,
                          accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        """Statement and parameters: (account, is_member) for accounts that do not exist
        (False) or are already members (True); the others give no row."""
        ...

    def insert_members(self, app: int, group_id: str, accounts: list[str], roles: list[str],
                       join_times: list[int], msg_seqs: list[int]
                       ) -> tuple[Any, dict[str, Any]]:
        """Statement and parameters: insert member rows, skipping existing keys, returning
        the accounts inserted."""
        ...


# Membership checks bind each list of accounts as ONE parameter, so their cost does not
# depend on SQLAlchemy processing 300 x 10 parameters, and probe one account at a time. The
# obvious ``user_id IN (:p1, ..., :p300)`` lets PostgreSQL choose, from stale or skewed
# statistics, a plan that reads the whole tenant or the whole group on every request (seen: a
# cached generic plan scanning 17k accounts per call). LATERAL ... LIMIT 1 cannot become a
# hash join or a hashed subplan, so the plan stays a nested loop of index probes whatever the
# statistics say. SQLite plans each correlated EXISTS as an index probe per row.
_EXISTING_PG = prebuilt(text("""
SELECT w.account FROM unnest(CAST(:accounts AS VARCHAR[])) AS w(account)
JOIN LATERAL (SELECT 1 FROM accounts
              WHERE sdkappid = :app AND user_id = w.account LIMIT 1) AS a ON true
"""))
_EXISTING_SQLITE = text("""
SELECT w.value FROM json_each(:accounts) AS w
WHERE EXISTS (SELECT 1 FROM accounts WHERE sdkappid = :app AND user_id = w.value)
""")
# Only the exceptions come back: accounts that do not exist, and those already members
# (flag true). A fresh import of 300 members reads no rows at all.
_EXCEPTIONS_PG = text("""
SELECT w.account, m.x IS NOT NULL
FROM unnest(CAST(:accounts AS VARCHAR[])) AS w(account)
LEFT JOIN LATERAL (SELECT 1 AS x FROM accounts
                   WHERE sdkappid = :app AND user_id = w.account LIMIT 1) AS a ON true
LEFT JOIN LATERAL (SELECT 1 AS x FROM group_members
                   WHERE sdkappid = :app AND group_id = :grp AND member = w.account
                   LIMIT 1) AS m ON true
WHERE a.x IS NULL OR m.x IS NOT NULL
""")
_EXCEPTIONS_SQLITE = text("""
SELECT w.value, EXISTS (SELECT 1 FROM group_members
                        WHERE sdkappid = :app AND group_id = :grp AND member = w.value)
FROM json_each(:accounts) AS w
WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE sdkappid = :app AND user_id = w.value)
   OR EXISTS (SELECT 1 FROM group_members
              WHERE sdkappid = :app AND group_id = :grp AND member = w.value)
""")
# One multi-row INSERT for the whole batch, its rows unpacked by the database from one
# parameter per column (PostgreSQL) or one JSON text (SQLite).
_INSERT_MEMBERS_PG = text(f"""
INSERT INTO group_members ({_MEMBER_COLUMNS})
SELECT :app, :grp, w.member, w.role, w.join_time, w.msg_seq, 'AcceptAndNotify', 0, 0, ''
FROM unnest(CAST(:members AS VARCHAR[]), CAST(:roles AS VARCHAR[]),
            CAST(:join_times AS BIGINT[]), CAST(:msg_seqs AS BIGINT[]))
     AS w(member, role, join_time, msg_seq)
ON CONFLICT DO NOTHING
RETURNING member
""")
# "WHERE true": SQLite needs it to tell an upsert's ON from a join's ON after a SELECT.
_INSERT_MEMBERS_SQLITE = text(f"""
INSERT INTO group_members ({_MEMBER_COLUMNS})
SELECT :app, :grp, json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]'),
       json_extract(w.value, '$[2]'), json_extract(w.value, '$[3]'),
       'AcceptAndNotify', 0, 0, ''
FROM json_each(:rows) AS w WHERE true
ON CONFLICT DO NOTHING
RETURNING member
""")


class SqliteDialect:
    """SQLite: one writer per process (the asyncio lock), lists bound as JSON text."""

    name = "sqlite"

    def insert(self, table: Any) -> Insert:
        return sqlite.insert(table)

    def locking(self, stmt: Any) -> Any:
        return stmt  # the write lock already serialises every writer

    def write_lock(self) -> asyncio.Lock | None:
        return asyncio.Lock()

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        # (the sqlite3 module leaves DDL outside any transaction unless one is begun
        # explicitly; busy_timeout bounds the wait for the other process)
        await conn.exec_driver_sql("BEGIN IMMEDIATE")

    def existing(self, app: int, accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        return _EXISTING_SQLITE, {"app": app, "accounts": _encode_json(accounts)}

    def member_exceptions(self, app: int, group_id: str,
                          accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        return _EXCEPTIONS_SQLITE, {"app": app, "grp": group_id,
                                    "accounts": _encode_json(accounts)}

    def insert_members(self, app: int, group_id: str, accounts: list[str], roles: list[str],
                       join_times: list[int], msg_seqs: list[int]
                       ) -> tuple[Any, dict[str, Any]]:
        rows = _encode_json(list(zip(accounts, roles, join_times, msg_seqs, strict=True)))
        return _INSERT_MEMBERS_SQLITE, {"app": app, "grp": group_id, "rows": rows}


class PostgresDialect:
    """PostgreSQL: row locks per group (``FOR UPDATE``), lists bound as arrays."""

    name = "postgresql"

    def insert(self, table: Any) -> Insert:
        return postgresql.insert(table)

    def locking(self, stmt: Any) -> Any:
        return stmt.with_for_update()

    def write_lock(self) -> asyncio.Lock | None:
        return None  # writers of different groups run in parallel

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": MIGRATION_LOCK_KEY})

    def existing(self, app: int, accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        return _EXISTING_PG, {"app": app, "accounts": accounts}

    def member_exceptions(self, app: int, group_id: str,
                          accounts: list[str]) -> tuple[Any, dict[str, Any]]:
        return _EXCEPTIONS_PG, {"app": app, "grp": group_id, "accounts": accounts}

    def insert_members(self, app: int, group_id: str, accounts: list[str], roles: list[str],
                       join_times: list[int], msg_seqs: list[int]
                       ) -> tuple[Any, dict[str, Any]]:
        return _INSERT_MEMBERS_PG, {"app": app, "grp": group_id, "members": accounts,
                                    "roles": roles, "join_times": join_times,
                                    "msg_seqs": msg_seqs}


def dialect_for(name: str) -> Dialect:
    """The dialect object for SQLAlchemy's dialect name (``engine.dialect.name``)."""
    if name == "sqlite":
        return SqliteDialect()
    if name == "postgresql":
        return PostgresDialect()
    raise ValueError(f"unsupported database dialect {name!r}")


__all__ = ["MIGRATION_LOCK_KEY", "Dialect", "PostgresDialect", "SqliteDialect", "dialect_for"]

