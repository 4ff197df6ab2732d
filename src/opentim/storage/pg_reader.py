"""PostgreSQL reads on asyncpg's own pool, as SQL compiled once per prebuilt statement.

Measured (``bench/run``, server CPU per request on PostgreSQL): a one-SELECT command cost
~670-820 µs through SQLAlchemy's asyncio layer (a greenlet per call, its asyncpg adapter,
its pool's checkout and reset) and ~185 µs this way. Statements are still written with
SQLAlchemy Core and compiled by its PostgreSQL dialect; only their execution is direct.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import msgspec
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TupleType

if TYPE_CHECKING:
    from opentim.storage.database import Database

_Statement = TypeVar("_Statement")
# Statements marked by prebuilt(), by id; holding them keeps their ids unique.
_MARKED: dict[int, Any] = {}


def is_prebuilt(statement: Any) -> bool:
    return _MARKED.get(id(statement)) is statement


def prebuilt(statement: _Statement) -> _Statement:
    """Mark a statement that is built once (a module constant) and takes every value from
    bind parameters: PostgreSQL reads run it as SQL compiled once (see ``PgReader``)."""
    _MARKED[id(statement)] = statement
    return statement


class Plan:
    """A prebuilt statement as the asyncpg driver runs it: SQL, its parameters in order,
    and the class of its rows (``PgRow`` until the first row gives the column names)."""

    __slots__ = ("names", "row", "sql")

    def __init__(self, sql: str, names: tuple[str, ...]) -> None:
        self.sql = sql
        self.names = names
        self.row: type[PgRow] = PgRow


# SQLAlchemy renders an expanding IN (a list bound as one parameter) only at execution time,
# as one placeholder per element; here the list is bound as one array instead, so the SQL,
# and the statement asyncpg prepares, stay the same whatever the list's length. An empty
# array matches nothing, as SQLAlchemy's empty IN does.
_EXPANDING_IN = re.compile(r"(?<!NOT) IN \(__\[POSTCOMPILE_(\w+)\]\)")


def plan(statement: Any, dialect: Dialect) -> Plan | None:
    """Compile for asyncpg, or None where SQLAlchemy must run it (values it would convert)."""
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.escaped_bind_names:
        return None
    for bind in compiled.binds.values():
        if not bind.required or bind.callable is not None or \
                bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None
    for column in getattr(statement, "selected_columns", ()):
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return None
    if any(isinstance(bind.type, TupleType) for bind in compiled.post_compile_params):
        return None  # (a, b) IN (...): no array to bind it as
    expanding = {bind.key for bind in compiled.post_compile_params}
    names = [name for name in compiled.positiontup or () if name not in expanding]
    arrays: dict[str, int] = {}

    def as_array(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in arrays:
            names.append(name)
            arrays[name] = len(names)
        return f" = ANY(${arrays[name]})"

    sql = _EXPANDING_IN.sub(as_array, compiled.string)
    if "__[POSTCOMPILE_" in sql:
        return None
    return Plan(sql, tuple(names))


class PgRow(asyncpg.Record):
    """An asyncpg row that also offers columns as attributes, as SQLAlchemy's ``Row`` does."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _row_class(names: Iterable[str]) -> type[PgRow]:
    """Rows of one statement, each column a property (measured: ~20x faster than
    ``__getattr__``, which a member page calls ~150 times)."""
    columns: dict[str, Any] = {"__slots__": ()}
    for i, name in enumerate(names):
        if name.isidentifier() and name not in columns and not hasattr(PgRow, name):
            columns[name] = property(operator.itemgetter(i))
    return type("Row", (PgRow,), columns)


class _Rows:
    """The part of SQLAlchemy's ``Result`` that reads use, over rows fetched at once."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> Sequence[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (MultipleResultsFound if self._rows else NoResultFound)(
                f"expected exactly one row, got {len(self._rows)}")
        return self._rows[0]

    def scalars(self) -> _Rows:
        """The first column's values (iterable, with ``all()``, ``first()``, ``one()``)."""
        return _Rows([row[0] for row in self._rows])

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


_UNSEEN = object()


class PgReader:
    """PostgreSQL reads: prebuilt statements on asyncpg's pool, the rest through SQLAlchemy.

    Measured (``bench/run``, server CPU per request on PostgreSQL): account_check (one
    SELECT) ~670-820 µs through SQLAlchemy's asyncio adaptation (a greenlet per call), its
    asyncpg adapter and its pool's checkout and reset, ~185 µs this way; get_group_info (two)
    ~1,230-1,490 µs against ~365 µs. A statement marked ``prebuilt`` is compiled once, by
    SQLAlchemy's PostgreSQL dialect, and then runs as that SQL straight on an asyncpg
    connection, in autocommit like every read. Connections are taken on first use and given
    back at the end of the ``read()`` block; results are fetched whole.
    """

    __slots__ = ("_con", "_db", "_sa")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._con: Any = None
        self._sa: AsyncConnection | None = None

    async def __aenter__(self) -> PgReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        try:
            if self._con is not None:
                await self._db._pool.release(self._con)  # type: ignore[union-attr]
        finally:
            if self._sa is not None:
                await self._sa.close()

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        db = self._db
        plan: Any = db._plans.get(id(statement), _UNSEEN)  # a Plan, None or _UNSEEN
        if plan is _UNSEEN:
            plan = db._plan_for(statement)
        if plan is None:
            db.fallback_reads += 1
            if self._sa is None:
                self._sa = await db._reader.connect().start()
            return await self._sa.execute(statement, parameters)
        if self._con is None:
            self._con = await (db._pool or await db._open_pool()).acquire()
        try:
            rows = await self._con.fetch(plan.sql, *[parameters[n] for n in plan.names],
                                         record_class=plan.row)
        except asyncpg.InternalClientError as exc:
            # "another operation is in progress": reads never share a connection, so the
            # server has just ended this one (its FATAL notice is in, the close is not yet:
            # a restart, pg_terminate_backend). Drop it; the pool opens a new one.
            self._con.terminate()
            raise asyncpg.ConnectionDoesNotExistError(
                f"the server ended this connection ({exc})") from exc
        if plan.row is PgRow and rows:
            plan.row = _row_class(rows[0].keys())
        return _Rows(rows)



async def asyncpg_codecs(conn: asyncpg.Connection) -> None:
    """JSON columns decode as SQLAlchemy's asyncpg dialect sets them up (with msgspec)."""
    decode = msgspec.json.decode
    await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                              encoder=str.encode, decoder=decode)
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=lambda value: b"\x01" + value.encode(),
                              decoder=lambda data: decode(data[1:]))


async def keep_session(_conn: asyncpg.Connection) -> None:
    """Readers change no session state: asyncpg's default reset would cost a round trip
    (RESET ALL, UNLISTEN *, …) per read. asyncpg still rolls back an open transaction."""


