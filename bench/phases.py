"""The phases that need no held gateway members: REST on SQLite and PostgreSQL (1, with the
admin_getroammsg row), idle gateway connections (5), the presence store in process (6) and
bench/import_members.py (7). Phase 2 is in bench/presence_phase.py, phase 3 in
bench/messages_phase.py, phase 4 in bench/cluster_phase.py. Each is a function of the run's
Suite; its docstring is what the run prints when the phase starts."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import history
import scratch
from backends import Backend
from probes import Load, bench_line
from processes import BARE, BENCH, CLIENTS, LOG_LEVEL, PY, BenchError, Server, pinned, run
from scenarios import HISTORY_PAGE, HISTORY_PAIR, SCENARIOS, Call

if TYPE_CHECKING:
    from harness import Suite


# --- phase 1: REST on SQLite and PostgreSQL ------------------------------------------


def phase_rest(suite: Suite) -> None:
    """REST calls on SQLite and PostgreSQL"""
    backends = {"sqlite": Backend("sqlite", f"sqlite:///{suite.tmp}/bench.db", 1400000100,
                                  version="SQLite " + sqlite3.sqlite_version)}
    if suite.db.pg_created:
        backends["postgresql"] = Backend("postgresql", suite.db.pg_url, 1400000200,
                                         version=f"PostgreSQL {suite.db.pg_version}")
    for row in suite.rows:
        if row.backend == "postgresql" and "postgresql" not in backends:
            row.status = "skipped: no postgresql"
    # The per-group message rate so high that it never trips, yet is counted on every send.
    msg_rate = ["--group-msg-rate", "1000000"]
    for b in backends.values():
        suite.versions.append(b.version)
        b.create_apps({"off": msg_rate, "high": msg_rate})
        b.start(suite.procs, suite.tmp / f"{b.name}.log")
    for b in backends.values():  # setup data on both apps
        suite.seed(b, (Call(c.path, c.body, app=app) for app in ("off", "high")
                       for s in SCENARIOS if b.name in s.backends for c in s.setup))
    suite.plan_calls(backends)
    suite.measure([r for r in suite.rows if r.backend in backends], suite.args.rounds)
    for b in backends.values():
        row = suite.row("history", b.name)
        try:
            measure_history(suite, b, row)
        except BenchError as exc:
            suite.fail([row], exc)
    suite.procs.stop()  # the servers hold connections to the database
    suite.db.drop_postgres()


def measure_history(suite: Suite, b: Backend, row: Any) -> None:
    """admin_getroammsg of the newest page: its rounds at 10k stored messages first (the
    baseline), then, once bench/history.py has added older messages up to the run's size,
    the same call's rounds again. The newest page, so the answer, is the same bytes both
    times. Sequential, not alternated: the second half needs the first half's table."""
    if row.status:
        return
    call = row.scenario.call
    assert call is not None and b.server is not None
    base_count, count = 10_000, suite.history_messages
    newest = int(time.time())
    started = time.monotonic()
    history.fill(b.db_url, b.sdkappids[call.app], HISTORY_PAIR, first=0, count=base_count,
                 newest=newest)
    answer = b.post(call)
    if json.loads(answer).get("MsgCnt") != HISTORY_PAGE:
        raise BenchError(f"admin_getroammsg on {b.name}: not a page of {HISTORY_PAGE}: "
                         f"{answer[:300]!r}")
    probe = suite.wrk_probe(f"{call.path} on {b.name}", b.url(call), [call], [answer],
                            b.server, row.scenario.connections)
    row.base_label = "the same call at 10k stored messages"
    seconds, rounds = suite.args.seconds, suite.args.rounds

    def runs() -> list[Load]:
        probe.run(1)  # warm-up, not counted (in quick mode too: the halves run apart)
        return [probe.run(seconds) for _ in range(rounds)]

    base = runs()
    filled = time.monotonic()
    # A tenth of what is added is older history of this conversation, the rest is other
    # conversations' messages over the same seconds.
    own = (count - base_count) // 10
    history.fill(b.db_url, b.sdkappids[call.app], HISTORY_PAIR, first=base_count,
                 count=own, newest=newest, others=count - base_count - own)
    fill_s = time.monotonic() - filled
    if b.post(call) != answer:
        raise BenchError(f"admin_getroammsg on {b.name}: the newest page changed when older "
                         "messages were added")
    measured = runs()
    row.runs.extend(zip(measured, base, strict=True))
    for m, r in zip(measured, base, strict=True):
        print(f"  {row.label[:60]} [{b.name}]: {m.value:,.2f} vs baseline {r.value:,.2f}",
              flush=True)
    suite.note(f"admin_getroammsg [{b.name}]: bench/history.py added {own:,} older "
               f"messages of the conversation and {count - base_count - own:,} of 1,000 "
               f"others in {fill_s:.1f} s (the row took {time.monotonic() - started:.0f} s); "
               f"rounds at 10k stored first, then at {count:,}, not alternated")


# --- phase 5: idle connections -------------------------------------------------------


def phase_idle(suite: Suite) -> None:
    """{idle} idle gateway connections: server memory"""
    row = suite.row("idle", "memory")
    count = suite.idle_count
    row.kind, row.unit = "size", "conn"
    row.base_label = f"bare uvicorn WebSocket echo, same {count:,} connections"
    b = Backend("idle", f"sqlite:///{suite.tmp}/idle.db", 1400000500)
    b.create_apps({"off": []})
    server = b.start(suite.procs, suite.tmp / "idle.log")
    measured = hold_memory(suite, server, b.gateway_args("off"), count)
    suite.procs.stop_one(server.proc)  # not busy closing 10k sockets during the baseline
    bare = suite.procs.server("bare WebSocket", [PY, BARE, "--log-level", LOG_LEVEL],
                              suite.tmp / "bare-ws.log")
    base = hold_memory(suite, bare, ["--url", bare.url, "--sdkappid", "1", "--key", "x"],
                       count)
    row.runs.append((Load(measured), Load(base)))


def hold_memory(suite: Suite, server: Server, gateway: list[str], count: int) -> float:
    """Server RSS growth per connection, from 20 warm-up connections to 20 + count."""
    log = suite.tmp / f"hold-{server.port}"
    warm = suite.procs.client(["hold", *gateway, "--prefix", "bench_w_", "--count", "20"],
                              log.with_suffix(".warm"))
    suite.procs.ready(warm, log.with_suffix(".warm"), 60)
    time.sleep(1)
    before = server.rss()
    per = math.ceil(count / (1 if count <= 2500 else 4))  # one process per 2,500
    holders = [suite.procs.client(["hold", *gateway, "--prefix", "bench_i_", "--first",
                                   str(first), "--count", str(per)],
                                  log.with_suffix(f".{first}"))
               for first in range(0, count, per)]
    for proc, first in zip(holders, range(0, count, per), strict=True):
        suite.procs.ready(proc, log.with_suffix(f".{first}"), 300)
    time.sleep(2)
    after = server.rss()
    server.check_alive()
    for proc in [*holders, warm]:
        if proc.poll() is not None:
            raise BenchError(f"{server.name}: held connections were dropped")
    suite.note(f"{server.name}: RSS {before / 2**20:.1f} MiB with 20 connections, "
               f"{after / 2**20:.1f} MiB with {20 + count:,}")
    for proc in [*holders, warm]:
        suite.procs.stop_one(proc)
    return (after - before) / count


# --- phase 6: the presence store at 100k members -------------------------------------


def phase_store(suite: Suite) -> None:
    """the presence store in process: memory and page latency at {store} members"""
    members = suite.store_members
    calls = "200" if suite.args.quick else "1000"

    def store(backend: str) -> Any:
        out = run([*pinned(0), PY, CLIENTS, "store", "--backend", backend, "--members",
                   str(members), "--calls", calls, "--redis", suite.db.redis_url,
                   "--prefix", suite.db.prefix], 600)
        return bench_line(out, f"store {backend}")

    for backend, baseline in (("memory", "dict"), ("redis", "redis-raw")):
        mem_row, page_row = suite.row("store_memory", backend), suite.row("store_page",
                                                                          backend)
        if backend == "redis" and not suite.db.redis_url:
            mem_row.status = page_row.status = "skipped: no Redis"
            continue
        mem_row.kind, mem_row.unit = "size", "member"
        page_row.kind, page_row.unit = "latency", "ms"
        try:
            got, base = store(backend), store(baseline)
        except BenchError as exc:
            suite.fail([mem_row, page_row], exc)
            continue
        mem_row.runs.append((Load(got["bytes"] / members), Load(base["bytes"] / members)))
        big, small = got[f"page_{members}"], got["page_500"]
        page_row.runs.append((Load(big["p50_us"] / 1000, big["p50_us"] / 1000,
                                   big["p99_us"] / 1000),
                              Load(small["p50_us"] / 1000, small["p50_us"] / 1000,
                                   small["p99_us"] / 1000)))
        marks = (f"set_marks / delete_marks of mark 1001 on 500 members (modify_user_info"
                 f"'s store work): p50 {got['marks_500']['p50_us']:,.0f} µs, p99 "
                 f"{got['marks_500']['p99_us']:,.0f} µs")
        if backend == "memory":
            mem_row.base_label = "plain dicts: account → row bytes, conn id → account"
            suite.note(f"store, memory: {members:,} joins in {got['join_s']:.2f} s; RSS "
                       f"growth, a fresh process each; {marks}")
        else:
            mem_row.base_label = "raw Redis: ZADD order + HSET rows + HSET conn ids"
            raw = base[f"page_{members}"]
            suite.note(f"store, Redis: {members:,} joins in {got['join_s']:.2f} s (64 in "
                       f"flight); used_memory growth less client buffers (all of Redis: "
                       f"other clients' writes add noise); MEMORY USAGE of the keys: "
                       f"{got['usage'] / members:,.0f} B/member, raw "
                       f"{base['usage'] / members:,.0f}; raw ZREVRANGE + HMGET of 500: "
                       f"p50 {raw['p50_us']:,.0f} µs, p99 {raw['p99_us']:,.0f} µs; {marks}")
        page_row.base_label = "the same page at 500 members"


# --- phase 7: import_group_member ----------------------------------------------------


def phase_imports(suite: Suite) -> None:
    """bench/import_members.py"""
    flags = ["--quick"] if suite.args.quick else []
    # The same database as the REST phase (dropped by then), made and dropped again by
    # import_members.py; passed in the environment so no password shows in argv.
    env, shown = {}, ""
    if suite.db.pg_url:
        env["OPENTIM_BENCH_POSTGRES_URL"] = suite.db.pg_url
        shown = f"OPENTIM_BENCH_POSTGRES_URL={scratch.shown(suite.db.pg_url)} "
    else:
        flags += ["--db", "sqlite"]
    out = run([PY, str(BENCH / "import_members.py"), *flags],
              120 if suite.args.quick else 3600, env)
    suite.import_output = (f"$ {shown}python bench/import_members.py {' '.join(flags)}\n"
                           f"{out}")
    results = bench_line(out, "import_members.py")
    for row in suite.rows:
        if row.scenario.special != "imports":
            continue
        db, _, scenario = row.backend.partition(", ")
        mine = [r for r in results if (r["db"], r["scenario"]) == (db, scenario)]
        endpoint = [r for r in mine if r["path"].startswith("endpoint")]
        bulk = [r for r in mine if not r["path"].startswith("endpoint")]
        if not endpoint or not bulk:
            row.status = f"skipped: no {db}"
            continue
        fastest = max(bulk, key=lambda r: r["members"] / r["seconds"])
        row.unit = "members/s"
        row.base_label = f"fastest bulk path: {fastest['path']}"
        row.runs.append((Load(endpoint[0]["members"] / endpoint[0]["seconds"]),
                         Load(fastest["members"] / fastest["seconds"])))

