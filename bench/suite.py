"""OpenTIM benchmark suite: real servers under wrk, each figure beside a same-run baseline.

Run it through ``bench/run`` (``--quick`` for the CI smoke version). It starts OpenTIM on
SQLite (a temp dir) and on PostgreSQL (a database of its own, when reachable) plus the bare
ASGI baseline (bench/bare.py), all pinned to core 0 with wrk on core 1; seeds data over
REST; runs every scenario and its baseline alternately, ``--rounds`` times; prints one table
and stops everything it started; then runs bench/import_members.py (``--quick`` in quick
mode) when present and prints its output. Any failed request, wrong answer body, dead server
or failing import_members.py makes it exit non-zero.

A scenario is one entry in SCENARIOS: the call to measure, the data it needs (REST calls
made once per app beforehand) and its baseline (the bare app answering the same bytes, or
another OpenTIM call). An entry without a call is a row marked "not yet implemented".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from opentim.protocol import dispatch, usersig
from opentim.protocol.ratelimit import RateLimiter

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
ADMIN = "administrator"
# The two apps every backend gets: rate limit off (used by default), and one so high it
# never trips, to price the limiter itself.
APPS = {"off": 0, "high": 1_000_000}
LOG_LEVEL = "warning"  # `opentim serve` defaults to info, which logs a line per request


class BenchError(Exception):
    pass


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A REST call: ``/v4/<path>`` with a JSON body, as app ``app``, answering ``expect``."""

    path: str
    body: dict[str, Any]
    app: str = "off"
    expect: int = 0  # the ErrorCode the answer must carry

    def key(self) -> str:
        return self.path + json.dumps(self.body, sort_keys=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    call: Call | None = None  # None: not yet implemented
    baseline: Call | None = None  # None: bare ASGI answering the same bytes as `call`
    setup: tuple[Call, ...] = ()  # made once per backend and app, before any load
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    needs: str = ""  # for a row without a call: the "service/command" it will measure
    elsewhere: str = ""  # for a row without a call: a bench/ script that measures it


USERS = [f"bench_user_{i}" for i in range(10)]
GROUP = "bench_group"
IMPORT_USERS = Call("im_open_login_svc/multiaccount_import",
                    {"AccountList": [{"UserID": u} for u in USERS]})
CREATE_GROUP = Call("group_open_http_svc/create_group", {
    "Type": "Public", "Name": "bench", "GroupId": GROUP, "Owner_Account": USERS[0],
    "MemberList": [{"Member_Account": u} for u in USERS[1:]]})
ACCOUNT_CHECK = Call("im_open_login_svc/account_check", {"CheckItem": [{"UserID": USERS[0]}]})

SCENARIOS = [
    Scenario("REST edge: account_check, 1 UserID (auth, dispatch, envelope, 1 SELECT)",
             ACCOUNT_CHECK, setup=(IMPORT_USERS,)),
    Scenario("get_group_info, 1 Public group of 10 members (2 SELECTs)",
             Call("group_open_http_svc/get_group_info", {"GroupIdList": [GROUP]}),
             setup=(IMPORT_USERS, CREATE_GROUP)),
    # No command yet answers without the store, so the edge alone is priced on an unknown
    # command: fully authenticated, then refused with 10003 before any store access.
    Scenario("edge only: group_open_http_svc/no_such_command → 10003",
             Call("group_open_http_svc/no_such_command", {}, expect=10003)),
    Scenario("rate limiter: account_check at 1,000,000/s (baseline: limit off)",
             Call(ACCOUNT_CHECK.path, ACCOUNT_CHECK.body, app="high"), baseline=ACCOUNT_CHECK,
             setup=(IMPORT_USERS,)),
    # Issue 7, still to come: give each a call, setup and baseline.
    Scenario("get_members, 500-member page, without Mark",
             needs="group_open_avchatroom_http_svc/get_members"),
    Scenario("get_members, 500-member page, with Mark",
             needs="group_open_avchatroom_http_svc/get_members"),
    Scenario("get_online_member_num", needs="group_open_http_svc/get_online_member_num"),
    Scenario("modify_user_info, 500 accounts",
             needs="group_open_avchatroom_http_svc/modify_user_info"),
    Scenario("import_group_member, 300 per call",
             needs="group_open_http_svc/import_group_member", elsewhere="import_members.py"),
    Scenario("gateway join/leave churn"),
    Scenario("10k idle gateway connections: memory"),
    Scenario("100k-member group: memory and latency"),
]


# --- processes --------------------------------------------------------------------------


def pinned(core: int) -> list[str]:
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (utime, stime in /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} server exited ({self.proc.returncode}):\n"
                             + self.log.read_text()[-2000:])


@dataclass
class Processes:
    """Everything this run started; stop() ends each by its own process group."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def server(self, name: str, argv: list[str], log: Path, timeout: float = 60) -> Server:
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen([*pinned(0), *argv, "--port", str(port)], cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append(proc)
        server = Server(name, port, proc, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server.check_alive()
            with contextlib.suppress(httpx.TransportError):
                httpx.get(server.url + "/", timeout=2, trust_env=False)
                return server
            time.sleep(0.1)
        raise BenchError(f"{name} server did not answer within {timeout:.0f} s; see {log}")

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.started.clear()


def run(argv: list[str], timeout: float) -> str:
    """Run a child to completion in its own process group; on timeout or interruption the
    group gets SIGINT (time to clean up its own children), then SIGKILL."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from None
        raise
    if proc.returncode != 0:
        raise BenchError(f"failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{out[-2000:]}\n{err[-2000:]}")
    return out


# --- backends ---------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    db_url: str
    sdkappids: dict[str, int]  # app label -> SDKAppID (distinct per backend: see bare.py)
    version: str = ""
    queries: dict[str, str] = field(default_factory=dict)  # app label -> query string
    server: Server | None = None

    def create_apps(self) -> None:
        for app, rate in APPS.items():
            sdkappid, key = self.sdkappids[app], os.urandom(32).hex()
            run([PY, "-m", "opentim", "app", "create", "--sdkappid", str(sdkappid), "--key", key,
                 "--rate-limit", str(rate), "--db", self.db_url], 60)
            sig = usersig.generate(sdkappid, key, ADMIN)
            self.queries[app] = (f"sdkappid={sdkappid}&identifier={ADMIN}&usersig={sig}"
                                 f"&random=99999999&contenttype=json")

    def url(self, call: Call) -> str:
        assert self.server is not None
        return f"{self.server.url}/v4/{call.path}?{self.queries[call.app]}"

    def post(self, call: Call) -> bytes:
        answer = httpx.post(self.url(call), json=call.body, timeout=30, trust_env=False).content
        code = json.loads(answer).get("ErrorCode")
        if code != call.expect:
            raise BenchError(f"{self.name}: {call.path} answered ErrorCode {code}, expected "
                             f"{call.expect}: {answer[:300]!r}")
        return answer


def postgres_database(admin_url: str, name: str, *, drop: bool = False) -> str:
    """Create (or drop) database ``name``; returns the server version."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)

    async def work() -> str:
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                     password=url.password, database="postgres", timeout=3)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop:
                await conn.execute(f'CREATE DATABASE "{name}"')
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(asyncio.wait_for(work(), 15))


# --- load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server process CPU time (all threads) per request: robust to a busy box


@dataclass(frozen=True)
class Target:
    """A URL wrk can hit: the request body file and the exact answer it must get back."""

    label: str
    url: str
    body_file: Path
    expect_file: Path
    server: Server


def ensure_wrk(quick: bool) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if quick and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it (apt-get install -y wrk)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "install", "-y", "-q", "wrk"],
                     ["sh", "-c", "apt-get update -q && apt-get install -y -q wrk"]):
            if subprocess.run(argv, env=env, capture_output=True, timeout=180).returncode == 0:
                break
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError("wrk is not installed: install it with `apt-get install wrk` "
                     "(Debian/Ubuntu) or `brew install wrk`")


def wrk(binary: str, target: Target, *, seconds: float, connections: int) -> Load:
    argv = [*pinned(1), binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "--latency", "-s", str(BENCH / "post.lua"), target.url, "--",
            str(target.body_file), str(target.expect_file)]
    cpu_before = target.server.cpu_seconds()
    out = run(argv, timeout=seconds + 30)
    cpu = target.server.cpu_seconds() - cpu_before
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result for {target.label}:\n{out[-2000:]}")
    r = json.loads(line[6:])
    errors = {k: r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                "status_errors", "timeouts", "bad_bodies") if r[k]}
    if r["requests"] == 0 or r["checked"] != r["requests"]:
        errors["unchecked"] = r["requests"] - r["checked"]
    target.server.check_alive()
    if errors or not r["requests"]:
        raise BenchError(f"{target.label}: {r['requests']} requests, errors {errors}")
    return Load(r["requests"] / (r["duration_us"] / 1e6), r["p50_us"] / 1000,
                r["p99_us"] / 1000, cpu / r["requests"] * 1e6)


# --- the run ----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    backend: str
    target: Target | None = None
    base: Target | None = None
    base_label: str = "bare ASGI, same bytes"
    runs: list[tuple[Load, Load]] = field(default_factory=list)  # (measured, baseline)
    status: str = ""  # why there are no numbers, when there are none


class Suite:
    def __init__(self, args: argparse.Namespace, procs: Processes, tmp: Path) -> None:
        self.args = args
        self.procs = procs
        self.tmp = tmp
        self.backends: dict[str, Backend] = {}
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.pg_name = f"opentim_bench_{os.getpid()}"
        self.pg_created = False

    def start(self) -> None:
        dispatch.load_services()  # to tell which planned rows the server could run
        self.backends["sqlite"] = Backend("sqlite", f"sqlite:///{self.tmp}/bench.db",
                                          {"off": 1400000101, "high": 1400000102},
                                          version="SQLite " + sqlite3.sqlite_version)
        if self.args.postgres:
            try:
                version = postgres_database(self.args.postgres, self.pg_name)
            except Exception as exc:
                reason = f"PostgreSQL not reachable at {self.args.postgres}: {exc!r}"
                if os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1":
                    raise BenchError(reason + " (OPENTIM_REQUIRE_SERVICES=1)") from None
                self.notes.append("skipped " + reason)
            else:
                self.pg_created = True
                self.backends["postgresql"] = Backend(
                    "postgresql", f"{self.args.postgres.rstrip('/')}/{self.pg_name}",
                    {"off": 1400000201, "high": 1400000202}, version="PostgreSQL " + version)
        for b in self.backends.values():
            b.create_apps()
            b.server = self.procs.server(
                f"OpenTIM ({b.name})",
                [PY, "-m", "opentim", "serve", "--db", b.db_url, "--log-level", LOG_LEVEL],
                self.tmp / f"{b.name}.log")
        for b in self.backends.values():
            seen: set[str] = set()
            for call in (c for s in SCENARIOS for c in s.setup):
                if call.key() not in seen:
                    seen.add(call.key())
                    for app in APPS:
                        b.post(Call(call.path, call.body, app=app))
        self.plan()

    def target(self, label: str, b: Backend, call: Call, answer: bytes) -> Target:
        assert b.server is not None
        n = len(list(self.tmp.glob("req-*")))
        return Target(label, b.url(call),
                      self.write(f"req-{n}.json", json.dumps(call.body).encode()),
                      self.write(f"expect-{n}.json", answer), b.server)

    def write(self, name: str, data: bytes) -> Path:
        (self.tmp / name).write_bytes(data)
        return self.tmp / name

    def plan(self) -> None:
        """One row per scenario and backend; learn each answer's bytes; start the bare app."""
        bare_rows: list[Row] = []
        for s in SCENARIOS:
            if s.call is None:
                status = "not yet implemented"
                if s.elsewhere and (BENCH / s.elsewhere).exists():
                    status = f"see bench/{s.elsewhere} below"
                elif tuple(s.needs.split("/")) in dispatch.COMMANDS:
                    status += f" (the server has {s.needs.split('/')[1]})"
                self.rows.append(Row(s, "—", status=status))
                continue
            for name in s.backends:
                row = Row(s, name)
                self.rows.append(row)
                b = self.backends.get(name)
                if b is None:
                    row.status = f"skipped: no {name}"
                    continue
                label = f"{s.call.path} on {name}" + ("" if s.call.app == "off" else
                                                      f", rate limit {APPS[s.call.app]:,}")
                row.target = self.target(label, b, s.call, b.post(s.call))
                if s.baseline is None:
                    bare_rows.append(row)
                else:
                    row.base_label = ("OpenTIM, rate limit off" if s.baseline.path == s.call.path
                                      else f"OpenTIM {s.baseline.path}")
                    row.base = self.target(label + " (baseline)", b, s.baseline,
                                           b.post(s.baseline))
        if not bare_rows:
            return
        entries = []
        for row in bare_rows:
            assert row.target is not None
            path, _, query = row.target.url.partition("/v4/")[2].partition("?")
            entries.append({"path": "/v4/" + path, "query": query,
                            "body_b64": base64.b64encode(row.target.expect_file.read_bytes())
                            .decode()})
        bodies = self.write("bare-bodies.json", json.dumps(entries).encode())
        bare = self.procs.server(
            "bare ASGI", [PY, str(BENCH / "bare.py"), "--bodies", str(bodies),
                          "--log-level", LOG_LEVEL], self.tmp / "bare.log")
        for row in bare_rows:
            t = row.target
            assert t is not None
            row.base = Target(t.label + " (bare)", bare.url + t.url[len(t.server.url):],
                              t.body_file, t.expect_file, bare)
            got = httpx.post(row.base.url, content=t.body_file.read_bytes(), timeout=10,
                             trust_env=False).content
            if got != t.expect_file.read_bytes():
                raise BenchError(f"bare app answered {got[:200]!r} for {t.label}")

    def measure(self, wrk_bin: str) -> None:
        pairs = [r for r in self.rows if r.target and r.base]
        conns = self.args.connections
        for r in pairs:  # warm caches, pools and sigs; not counted
            for t in (r.base, r.target):
                assert t is not None
                self.guard(r, partial(wrk, wrk_bin, t, seconds=1, connections=conns))
        for n in range(self.args.rounds):
            for r in pairs:
                if r.status:
                    continue
                assert r.target and r.base
                # Alternate who goes first so a slow spell on the machine hits both sides.
                first, second = (r.base, r.target) if n % 2 == 0 else (r.target, r.base)
                loads = []
                for t in (first, second):
                    load = self.guard(r, partial(wrk, wrk_bin, t, seconds=self.args.seconds,
                                                 connections=conns))
                    if load is None:
                        break
                    loads.append(load)
                else:
                    base, measured = loads if first is r.base else loads[::-1]
                    r.runs.append((measured, base))
                    print(f"  round {n + 1}: {r.target.label}: {measured.rps:,.0f} req/s, "
                          f"baseline {base.rps:,.0f}", flush=True)

    def guard(self, row: Row, work: Callable[[], Load]) -> Load | None:
        if row.status:
            return None
        try:
            return work()
        except BenchError as exc:
            row.status = "FAILED"
            self.failures.append(str(exc))
            print(f"  FAILED: {exc}", flush=True)
            return None

    def stop(self) -> None:
        self.procs.stop()
        if self.pg_created:
            with contextlib.suppress(Exception):
                postgres_database(self.args.postgres, self.pg_name, drop=True)


# --- report -----------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.2f} ms"


def render(rows: list[Row]) -> str:
    head = ("| scenario | db | req/s | p50 | p99 | CPU/req | baseline | base req/s | base p50 "
            "| base p99 | base CPU/req | req/s ratio (range) | added per request: 1/req/s "
            "| added per request: CPU |")
    lines = [head, "|---|---|" + "---:|" * 4 + "---|" + "---:|" * 7]
    for r in rows:
        if not r.runs or r.status:
            lines.append(f"| {r.scenario.name} | {r.backend} | {r.status or 'no result'} |"
                         + " — |" * 11)
            continue
        med = statistics.median
        ratios = [x.rps / y.rps for x, y in r.runs]
        added = med(1e6 / x.rps - 1e6 / y.rps for x, y in r.runs)
        added_cpu = med(x.cpu_us - y.cpu_us for x, y in r.runs)
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        cells = [r.scenario.name, r.backend, *summary([x for x, _ in r.runs]), r.base_label,
                 *summary([y for _, y in r.runs]), f"{med(ratios):.2f}×{spread}",
                 f"{added:+,.1f} µs", f"{added_cpu:+,.1f} µs"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(loads: list[Load]) -> list[str]:
    med = statistics.median
    return [f"{med(x.rps for x in loads):,.0f}", ms(med(x.p50_ms for x in loads)),
            ms(med(x.p99_ms for x in loads)), f"{med(x.cpu_us for x in loads):,.1f} µs"]


def limiter_cost() -> str:
    """The limiter's own price per call, in process (HTTP figures above carry the noise)."""
    limiter, n = RateLimiter(), 200_000
    costs = {}
    for rate in (0, 1_000_000):
        start = time.perf_counter()
        for i in range(n):
            limiter.allow(1, "account_check", rate, i * 1e-6)
        costs[rate] = (time.perf_counter() - start) / n * 1e9
    return (f"RateLimiter.allow() in process: {costs[1_000_000]:.0f} ns/call at 1,000,000/s, "
            f"{costs[0]:.0f} ns/call with the limit off")


def machine(backends: dict[str, Backend], wrk_bin: str) -> str:
    import uvicorn

    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    wrk_version = subprocess.run([wrk_bin, "-v"], capture_output=True, text=True).stdout
    mem_gib = int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20
    return (f"{os.cpu_count()} cores ({first('/proc/cpuinfo', 'model name')}), "
            f"{mem_gib:.1f} GiB RAM, Linux {platform.release()}; Python "
            f"{platform.python_version()}, uvicorn {uvicorn.__version__}; "
            f"{wrk_version.split(' [')[0].strip() or 'wrk'}; "
            + ", ".join(b.version for b in backends.values()))


def import_members(quick: bool) -> str | None:
    script = BENCH / "import_members.py"
    if not script.exists():
        return None
    flags = ["--quick"] if quick else []
    out = run([PY, str(script), *flags], 60 if quick else 3600)
    return f"$ python bench/import_members.py {' '.join(flags)}\n{out}"


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run (CI): 1 round of 1 s per run")
    p.add_argument("--rounds", type=int, help="alternating runs per pair (default 5)")
    p.add_argument("--seconds", type=int, help="wrk duration per run (default 5)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--postgres", default=os.environ.get(
        "OPENTIM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="server to create a scratch database on; '' to skip PostgreSQL")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.seconds = args.seconds or (1 if args.quick else 5)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk_bin = ensure_wrk(args.quick)
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="opentim-bench-") as tmp:
        suite = Suite(args, procs, Path(tmp))
        try:
            suite.start()
            print(f"measuring: {args.rounds} round(s) × {args.seconds} s per run", flush=True)
            suite.measure(wrk_bin)
        finally:
            suite.stop()
    pin = "server on core 0, wrk on core 1" if pinned(0) else "no CPU pinning (taskset missing)"
    report = "\n".join([
        f"OpenTIM bench ({mode}): `{' '.join(['bench/run', *argv])}`",
        f"machine: {machine(suite.backends, wrk_bin)}",
        f"load: wrk -t1 -c{args.connections}, {args.rounds} round(s) × {args.seconds} s per "
        f"run, medians; {pin}; server log level {LOG_LEVEL}",
        "",
        render(suite.rows),
        "",
        "req/s ratio: measured ÷ baseline, median (and range) of paired rounds. Added per "
        "request: 1/req/s − 1/base req/s, and the difference in the server process's own CPU "
        "time per request (/proc; excludes PostgreSQL's processes), medians.",
        limiter_cost(),
        *suite.notes,
        f"took {time.monotonic() - started:.0f} s",
    ])
    print("\n" + report + "\n", flush=True)
    try:
        extra = import_members(args.quick) or ""
    except BenchError as exc:
        extra = f"bench/import_members.py FAILED: {exc}"
        suite.failures.append(extra)
    print(extra)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"{stamp}-{mode}.md").write_text(f"{report}\n\n{extra}")
    for failure in suite.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if suite.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
