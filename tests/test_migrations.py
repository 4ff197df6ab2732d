"""The Alembic migrations produce exactly ``storage/schema.py``, on SQLite and PostgreSQL.

A fresh database is migrated to head the way the server does it (``Database.migrate``),
then Alembic's autogenerate compares what is there with the metadata the queries are
written against: tables, columns, types, nullability, indexes, keys. No difference allowed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url

from opentim.storage.database import Database
from opentim.storage.schema import metadata
from tests.helpers import PG_URL, ensure_pg_database, unavailable


async def _admin(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(user=parsed.username, password=parsed.password,
                                 host=parsed.host, port=parsed.port, database="postgres",
                                 timeout=5)


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database with a
    unique name (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrated.db"
        return
    error = await ensure_pg_database(PG_URL)
    if error:
        unavailable("PostgreSQL", error)
    name = f"opentim_migrations_{secrets.token_hex(6)}"
    admin = await _admin(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await _admin(PG_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _compare(conn: Connection) -> tuple[list[Any], set[str]]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, metadata), set(inspect(conn).get_table_names())


async def test_migrations_produce_the_schema(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        await db.migrate()
        await db.migrate()  # at head already: nothing to do, nothing broken
        async with db.engine.connect() as conn:
            differences, tables = await conn.run_sync(_compare)
    finally:
        await db.close()
    assert differences == []
    # (and the comparison did look at a migrated database)
    assert tables == {*metadata.tables, "alembic_version"}
