"""import_group_member throughput against the database's own bulk paths, same run.

    python bench/import_members.py [--quick] [--db sqlite|postgresql|both] [--members N]

For each database it starts ``opentim serve`` (pinned to core 0 when ``taskset`` exists; this
process, the clients, pins itself to the other core) and imports N memberships, 300 per
call, through the real HTTP endpoint from several concurrent clients with pre-encoded
bodies: once into one Community group (cap 1M) and once into many groups of 3000. Then it
writes the same rows straight into the same tables, twice: with the driver's executemany
(300 rows per transaction, as the endpoint commits) and with its fastest bulk path
(PostgreSQL: COPY through asyncpg; SQLite: one executemany in one transaction). The table
prints members/s and the ratio endpoint / fastest bulk.

Accounts are seeded straight into the database beforehand (not timed). PostgreSQL runs in
the database of ``--pg-url`` (default: OPENTIM_BENCH_POSTGRES_URL, else
``…/opentim_bench``), which this script creates, marks as its own and drops afterwards; it
refuses an existing database that is not a dead bench run's (bench/scratch.py). The rows
written are the current ``group_members`` columns (src/opentim/storage/schema.py; migration
0002 dropped ``unread_msg_num``). Every phase has a time limit (``--timeout``). SIGINT and
SIGTERM stop the run: the server it started is stopped and the scratch database dropped.
With ``OPENTIM_REQUIRE_SERVICES=1`` an unreachable PostgreSQL is a failure, not a skip. The
last line, ``BENCH [...]``, repeats the table as JSON for the suite (bench/phases.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import msgspec
import scratch
from TLSSigAPIv2 import TLSSigAPIv2

OPENTIM = Path(sys.executable).with_name("opentim")
BATCH = 300
GROUP_SIZE = 3000  # "many groups": members per group
SDKAPPID = 1_400_000_500
COLUMNS = ("sdkappid", "group_id", "member", "role", "join_time", "msg_seq", "msg_flag",
           "last_send_msg_time", "shut_up_until", "name_card", "app_member_defined_data")


@dataclass
class Row:
    db: str
    scenario: str
    path: str
    members: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.members / self.seconds


def account(i: int) -> str:
    return f"user{i:07d}"


def plan(members: int, scenario: str) -> list[tuple[str, list[str]]]:
    """(group, accounts) batches of at most 300, in the order they are sent."""
    size = members if scenario == "one group" else GROUP_SIZE
    batches = []
    for first in range(0, members, size):
        group = f"@TGS#_bench{'one' if size == members else 'many'}{first // size}"
        last = min(first + size, members)
        batches += [(group, [account(i) for i in range(start, min(start + BATCH, last))])
                    for start in range(first, last, BATCH)]
    return batches


def groups_of(batches: list[tuple[str, list[str]]]) -> list[str]:
    return list(dict.fromkeys(group for group, _ in batches))


# --- the databases ------------------------------------------------------------------------


class Backend:
    """Direct access for seeding and the baselines; the server gets ``url``."""

    name: str
    url: str

    async def seed_accounts(self, sdkappid: int, count: int) -> None: ...
    async def executemany(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None: ...
    async def bulk(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None: ...
    async def count_members(self, sdkappid: int) -> int: ...
    async def close(self) -> None: ...


def member_rows(sdkappid: int, batch: tuple[str, list[str]], now: int) -> list[tuple[Any, ...]]:
    # The row the endpoint writes for a plain import: Member, joined now, nothing unread.
    group, accounts = batch
    return [(sdkappid, group, a, "Member", now, 0, "AcceptAndNotify", 0, 0, "", None)
            for a in accounts]


_INSERT_SQLITE = (f"INSERT INTO group_members ({', '.join(COLUMNS)}) VALUES "
                  f"({', '.join('?' * len(COLUMNS))}) ON CONFLICT DO NOTHING")


class Sqlite(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "bench.db"
        self.url = f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        # The server's own pragmas (storage/database.py): WAL, synchronous=NORMAL.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def seed_accounts(self, sdkappid: int, count: int) -> None:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO accounts (sdkappid, user_id, nick, face_url, created_at) "
                "VALUES (?, ?, '', '', 0)", ((sdkappid, account(i)) for i in range(count)))
            conn.execute("COMMIT")

    async def executemany(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None:
        now = int(time.time())
        with contextlib.closing(self._connect()) as conn:
            for batch in batches:
                conn.execute("BEGIN")
                conn.executemany(_INSERT_SQLITE, member_rows(sdkappid, batch, now))
                conn.execute("COMMIT")

    async def bulk(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None:
        now = int(time.time())
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN")
            conn.executemany(_INSERT_SQLITE, (row for batch in batches
                                              for row in member_rows(sdkappid, batch, now)))
            conn.execute("COMMIT")

    async def count_members(self, sdkappid: int) -> int:
        with contextlib.closing(self._connect()) as conn:
            return conn.execute("SELECT count(*) FROM group_members WHERE sdkappid = ?",
                                (sdkappid,)).fetchone()[0]


class Postgres(Backend):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self.created = False

    async def create(self) -> None:
        """Create the database, marked as this run's (scratch.Refused if it is not ours)."""
        await scratch.create_pg(self.url)
        self.created = True

    async def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await asyncpg.connect(self.url)
        return self._conn

    async def seed_accounts(self, sdkappid: int, count: int) -> None:
        conn = await self.conn()
        await conn.copy_records_to_table(
            "accounts", columns=["sdkappid", "user_id", "nick", "face_url", "created_at"],
            records=((sdkappid, account(i), "", "", 0) for i in range(count)))
        # What autovacuum would do on a live server; this server may have it switched off.
        await conn.execute("ANALYZE accounts")

    async def executemany(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None:
        conn = await self.conn()
        now = int(time.time())
        sql = (f"INSERT INTO group_members ({', '.join(COLUMNS)}) VALUES "
               f"({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))}) "
               "ON CONFLICT DO NOTHING")
        for batch in batches:
            async with conn.transaction():
                await conn.executemany(sql, member_rows(sdkappid, batch, now))

    async def bulk(self, sdkappid: int, batches: list[tuple[str, list[str]]]) -> None:
        conn = await self.conn()
        now = int(time.time())
        await conn.copy_records_to_table(
            "group_members", columns=list(COLUMNS),
            records=(row for batch in batches for row in member_rows(sdkappid, batch, now)))

    async def count_members(self, sdkappid: int) -> int:
        conn = await self.conn()
        return await conn.fetchval("SELECT count(*) FROM group_members WHERE sdkappid = $1",
                                   sdkappid)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def drop(self) -> None:
        """Drop the database if it still carries this run's mark."""
        await self.close()
        if self.created and not await scratch.drop_pg(self.url):
            print(f"PostgreSQL {scratch.pg_describe(self.url)} no longer carries this run's "
                  "mark: left alone", file=sys.stderr)


# --- the server and its clients -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cmd: list[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


@contextlib.asynccontextmanager
async def server(url: str, log: Path, timeout: float) -> AsyncIterator[int]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned([str(OPENTIM), "serve", "--db", url, "--port", str(port),
                    "--log-level", "warning"], 0), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
                try:
                    await probe.post(f"http://127.0.0.1:{port}/v4/x/y", content=b"{}")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not start") from None
                    await asyncio.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Admin:
    def __init__(self, port: int, sdkappid: int, key: str) -> None:
        sig = TLSSigAPIv2(sdkappid, key).gen_sig("administrator")
        self.query = urlencode({"sdkappid": sdkappid, "identifier": "administrator",
                                "usersig": sig, "random": 1, "contenttype": "json"})
        self.base = f"http://127.0.0.1:{port}"

    def url(self, command: str) -> str:
        return f"{self.base}/v4/{command}?{self.query}"


async def endpoint(admin: Admin, batches: list[tuple[str, list[str]]], clients: int) -> float:
    """Seconds to import every batch through the endpoint; fails on any non-1 result."""
    url = admin.url("group_open_http_svc/import_group_member")
    bodies = [msgspec.json.encode({"GroupId": group, "MemberList": [
        {"Member_Account": a} for a in accounts]}) for group, accounts in batches]
    queue: Iterator[int] = iter(range(len(bodies)))
    headers = {"content-type": "application/json"}

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            for index in queue:
                reply = (await http.post(url, content=bodies[index], headers=headers)).content
                if reply.count(b'"Result":1') != len(batches[index][1]):
                    raise RuntimeError(f"batch {index} not fully imported: {reply[:300]!r}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start


async def create_groups(admin: Admin, groups: list[str]) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        for group in groups:
            reply = (await http.post(admin.url("group_open_http_svc/create_group"),
                                     content=msgspec.json.encode({
                                         "Type": "Community", "Name": "bench",
                                         "GroupId": group}))).json()
            if reply["ErrorCode"]:
                raise RuntimeError(f"create_group {group}: {reply}")


# --- the run -------------------------------------------------------------------------------


async def timed(label: str, work: Awaitable[Any], timeout: float) -> float:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise RuntimeError(f"{label}: over the {timeout:.0f} s limit") from None
    return time.perf_counter() - start


async def run_backend(backend: Backend, members: int, clients: int, timeout: float,
                      workdir: Path, scenarios: list[str]) -> list[Row]:
    rows: list[Row] = []
    key = secrets.token_hex(32)
    apps = iter(range(SDKAPPID, SDKAPPID + 100))
    sdkappid = next(apps)
    subprocess.run([str(OPENTIM), "app", "create", "--sdkappid", str(sdkappid), "--key", key,
                    "--rate-limit", "0", "--db", backend.url], check=True, capture_output=True)
    await timed("seeding accounts", backend.seed_accounts(sdkappid, members), timeout)
    async with server(backend.url, workdir / f"{backend.name}.log", 60) as port:
        admin = Admin(port, sdkappid, key)
        for scenario in scenarios:
            batches = plan(members, scenario)
            await create_groups(admin, groups_of(batches))
            seconds = await timed(f"{backend.name} {scenario} endpoint",
                                  endpoint(admin, batches, clients), timeout)
            rows.append(Row(backend.name, scenario, f"endpoint, {clients} clients", members,
                            seconds))
            print(f"  {backend.name:<10} {scenario:<11} endpoint      "
                  f"{members / seconds:>10,.0f} members/s", flush=True)
    if await backend.count_members(sdkappid) != members * len(scenarios):
        raise RuntimeError("the endpoint runs left the wrong number of member rows")
    baselines: list[tuple[str, Callable[[int, list[tuple[str, list[str]]]], Awaitable[None]]]]
    baselines = [("executemany, 300/txn", backend.executemany),
                 ("COPY" if backend.name == "postgresql" else "executemany, one txn",
                  backend.bulk)]
    for scenario in scenarios:
        batches = plan(members, scenario)
        for label, write in baselines:
            app = next(apps)  # a key range of its own, in the same tables
            seconds = await timed(f"{backend.name} {scenario} {label}", write(app, batches),
                                  timeout)
            rows.append(Row(backend.name, scenario, label, members, seconds))
            print(f"  {backend.name:<10} {scenario:<11} {label:<13} "
                  f"{members / seconds:>10,.0f} members/s", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'db':<11}{'scenario':<12}{'path':<23}{'members':>10}{'seconds':>9}"
             f"{'members/s':>12}{'÷ fastest':>11}"]
    for row in rows:
        fastest = max(r.rate for r in rows if (r.db, r.scenario) == (row.db, row.scenario)
                      and not r.path.startswith("endpoint"))
        lines.append(f"{row.db:<11}{row.scenario:<12}{row.path:<23}{row.members:>10,}"
                     f"{row.seconds:>9.2f}{row.rate:>12,.0f}{row.rate / fastest:>10.0%}")
    return "\n".join(lines)


async def main() -> int:
    """Runs the benchmark; SIGTERM cancels it like SIGINT does, so cleanup still runs."""
    stopped_by: list[int] = []
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda s=signum: (stopped_by.append(s), task.cancel()))
    try:
        return await measure()
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        print(f"import_members: stopped by signal {stopped_by[0]}; cleaned up", file=sys.stderr)
        return 128 + stopped_by[0]


async def measure() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 members instead of 1M")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--members", type=int, help="memberships per scenario")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--scenario", choices=["one group", "many groups", "both"],
                        default="both")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds allowed for each phase")
    parser.add_argument("--pg-url", default=os.environ.get(
        "OPENTIM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/opentim_bench"),
        help="the database to create, mark as this run's and drop (refused if it exists "
             "and is not a dead bench run's); env OPENTIM_BENCH_POSTGRES_URL")
    args = parser.parse_args()
    members = args.members or (20_000 if args.quick else 1_000_000)
    scenarios = ["one group", "many groups"] if args.scenario == "both" else [args.scenario]
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the clients; the server gets core 0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="opentim-bench-") as tmp:
        workdir = Path(tmp)
        if args.db in ("sqlite", "both"):
            rows += await run_backend(Sqlite(workdir), members, args.clients, args.timeout,
                                      workdir, scenarios)
        if args.db in ("postgresql", "both"):
            pg = Postgres(args.pg_url)
            print(f"import_members: PostgreSQL: {scratch.pg_describe(pg.url)} "
                  f"({scratch.shown(pg.url)}): created and marked by this run, dropped at "
                  "its end", flush=True)
            try:
                await pg.create()
            except (OSError, asyncpg.PostgresError) as exc:
                if os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1":
                    raise RuntimeError(f"PostgreSQL not reachable (OPENTIM_REQUIRE_SERVICES=1):"
                                       f" {exc}") from None
                print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            else:
                try:
                    rows += await run_backend(pg, members, args.clients, args.timeout,
                                              workdir, scenarios)
                finally:
                    await pg.drop()
    print()
    print(f"import_group_member, {BATCH} members per call; {len(os.sched_getaffinity(0))} "
          f"client core(s); server {'pinned to core 0' if shutil.which('taskset') else ''}")
    print(table(rows))
    print("BENCH " + json.dumps([{"db": r.db, "scenario": r.scenario, "path": r.path,
                                  "members": r.members, "seconds": r.seconds} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
