"""OpenTIM benchmark suite: real servers under load, each figure beside a same-run baseline.

Run it through ``bench/run`` (``--quick`` for the CI smoke version). Every server is pinned
to core 0 and every load generator (wrk, bench/clients.py) to core 1. Five phases, each
stopping what it started before the next begins:

1. REST on SQLite and PostgreSQL (the database of --pg-url, which the run creates and
   drops, when reachable): the calls under wrk against the bare ASGI app of bench/bare.py
   answering the same bytes.
2. Presence on the memory and the Redis backend (the database of --redis-url, claimed
   only if empty, when reachable): 1,000 members held online through real gateway
   connections, then get_members, get_online_member_num and modify_user_info under wrk,
   gateway churn, webhook latency and delivery (counters read from the server's metrics
   listener, --metrics-port); baselines: bare ASGI (same bytes, or re-encoding the same
   document), raw Redis doing the same writes, a bare WebSocket echo, a bare receiver.
3. Idle gateway connections (10k; 1k quick): server memory per connection against a bare
   WebSocket app.
4. The presence store in process: memory per member and page latency at 100k members (10k
   quick).
5. bench/import_members.py (``--quick`` in quick mode): import_group_member against the
   databases' bulk paths.

It first prints which PostgreSQL and Redis databases it will write to (bench/scratch.py
takes only what is provably its own). Then it prints one table, a targets summary and the
import script's own table, writes a copy to bench/results/, and stops everything it
started, on errors and signals too. Any failed request, wrong answer body, dead server,
dropped connection or failing step makes it exit non-zero; a missed performance target
does not (the machine is shared and noisy).

A scenario is one entry in SCENARIOS: a REST call with its data and baseline, or the name of
a Suite method (``special``) measuring a row that is not one REST call.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import scratch

from opentim.protocol import usersig
from opentim.protocol.ratelimit import RateLimiter
from opentim.webhooks.delivery import WebhookSettings
from opentim.webhooks.payloads import MEMBER_STATE_CHANGE

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
CLIENTS = str(BENCH / "clients.py")
BARE = str(BENCH / "bare.py")
ADMIN = "administrator"
# Apps every backend may get: rate limit off (used by default); one so high it never trips,
# to price the limiter; one sending member-state webhooks to a bare receiver.
APPS = {"off": 0, "high": 1_000_000, "hook": 0}
LOG_LEVEL = "warning"  # `opentim serve` defaults to info
PRESENCE = ("memory", "redis")
# Where a run writes unless told otherwise (--pg-url, --redis-url): bench/scratch.py checks
# that each is absent/empty or a dead bench run's before using it.
PG_URL = "postgresql://postgres@127.0.0.1:5432/opentim_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"


class BenchError(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C, so every finally block stops what it started."""


class OverTime(BaseException):
    """--time-limit passed: the whole run stops (a phase's BenchError handler won't catch it)."""


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A REST call: ``/v4/<path>`` with a JSON body, as app ``app``, answering ``expect``."""

    path: str
    body: dict[str, Any]
    app: str = "off"
    expect: int = 0  # the ErrorCode the answer must carry

    def key(self) -> str:
        return self.app + self.path + json.dumps(self.body, sort_keys=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    call: Call | None = None  # a REST call under wrk; None: `special` measures the row
    alternate: Call | None = None  # wrk alternates `call` and this (set, then delete)
    # None: bare ASGI answering the same bytes; "reencode": bare ASGI re-encoding the same
    # document with msgspec per request; a Call: another OpenTIM call.
    baseline: Call | str | None = None
    redis_baseline: str = ""  # on the Redis backend: this bench/clients.py raw-Redis probe
    setup: tuple[Call, ...] = ()  # made once per backend before any load
    after_join: tuple[Call, ...] = ()  # made once the gateway members are online
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    special: str = ""  # a Suite method measuring the row (not one REST call under wrk)
    # Calls leave work behind (pushes): the rate counts until the server is idle again.
    drain: bool = False
    connections: int = 0  # wrk connections for this row (and its baseline); 0: --connections


USERS = [f"bench_user_{i}" for i in range(10)]
GROUP = "bench_group"
IMPORT_USERS = Call("im_open_login_svc/multiaccount_import",
                    {"AccountList": [{"UserID": u} for u in USERS]})
CREATE_GROUP = Call("group_open_http_svc/create_group", {
    "Type": "Public", "Name": "bench", "GroupId": GROUP, "Owner_Account": USERS[0],
    "MemberList": [{"Member_Account": u} for u in USERS[1:]]})
ACCOUNT_CHECK = Call("im_open_login_svc/account_check", {"CheckItem": [{"UserID": USERS[0]}]})

AV, MARKS, CHURN = "bench_av", "bench_marks", "bench_churn"
# Members held online through real gateway connections: group -> (UserID prefix, count).
# get_members reads bench_av (Mark 1000 on 500 of its 1,000); modify_user_info changes the
# marks of bench_marks's 500, whose every call pushes marks_changed to those 500 connections.
HELD = {AV: ("bench_m_", 1000), MARKS: ("bench_k_", 500)}
MARKED, CHURNERS = 500, 64
GET_MEMBERS = "group_open_avchatroom_http_svc/get_members"


def import_accounts(prefix: str, count: int, app: str = "off") -> tuple[Call, ...]:
    """Accounts with a nick and an avatar URL, so a 500-row page is ~60 KB, as in real rooms."""
    return tuple(Call("im_open_login_svc/multiaccount_import", {"AccountList": [
        {"UserID": f"{prefix}{i}", "Nick": f"Viewer {i}",
         "FaceUrl": f"https://cdn.example.com/avatar/{i:07d}.png"}
        for i in range(start, min(start + 100, count))]}, app=app)
        for start in range(0, count, 100))


def av_group(group_id: str, app: str = "off") -> Call:
    return Call("group_open_http_svc/create_group",
                {"Type": "AVChatRoom", "Name": "bench", "GroupId": group_id}, app=app)


def marks(group: str, command: int, mark: int, members: range) -> Call:
    prefix = HELD[group][0]
    return Call("group_open_avchatroom_http_svc/modify_user_info", {
        "GroupId": group, "CommandType": command,
        "MemberList": [{"Member_Account": f"{prefix}{i}", "Marks": [mark]} for i in members]})


# Distinct groups: delivery keeps each group's callbacks in order (one in flight per
# group) and sends different groups in parallel.
HOOK_GROUPS = tuple(f"bench_hook_{i}" for i in range(8))
PRESENCE_SETUP = (*(c for prefix, n in HELD.values() for c in import_accounts(prefix, n)),
                  *import_accounts("bench_c_", CHURNERS), *(av_group(g) for g in HELD),
                  av_group(CHURN))
HOOK_SETUP = (*import_accounts("bench_c_", CHURNERS, app="hook"),
              *(av_group(g, app="hook") for g in HOOK_GROUPS))

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
    Scenario("get_members, 500-row page of 1,000 online (gateway), without Mark",
             Call(GET_MEMBERS, {"GroupId": AV, "Timestamp": 0}), baseline="reencode",
             setup=PRESENCE_SETUP, after_join=(marks(AV, 1, 1000, range(MARKED)),),
             backends=PRESENCE),
    Scenario("get_members, Mark 1000: the 500 of 1,000 online holding it",
             Call(GET_MEMBERS, {"GroupId": AV, "Timestamp": 0, "Mark": 1000}),
             baseline="reencode", backends=PRESENCE),
    Scenario("get_online_member_num, 1,000 online",
             Call("group_open_http_svc/get_online_member_num", {"GroupId": AV}),
             backends=PRESENCE),
    *(Scenario(f"modify_user_info, 500 online accounts: set mark 1001, then delete it, "
               f"{n} at a time; calls/s include pushing marks_changed to the 500 connections",
               marks(MARKS, 1, 1001, range(500)), alternate=marks(MARKS, 2, 1001, range(500)),
               redis_baseline="redis-marks", backends=PRESENCE, drain=True, connections=n)
      for n in (8, 1)),
    Scenario("import_group_member, 300 per call, 8 clients (bench/import_members.py)",
             special="imports", backends=("sqlite, one group", "sqlite, many groups",
                                          "postgresql, one group", "postgresql, many groups")),
    Scenario("gateway edge: 2 heartbeat round trips, 64 connections", special="heartbeats",
             backends=("memory",)),
    Scenario("gateway churn: join_group + quit_group round trips, 64 connections "
             "(members/s)", special="churn", backends=PRESENCE),
    Scenario("join + quit latency, paced, with member-state webhooks on (baseline: off)",
             special="hook_latency", backends=("memory",)),
    Scenario("webhook delivery: Group.CallbackOnMemberStateChange to a local receiver",
             special="webhooks", setup=HOOK_SETUP, backends=("memory",)),
    # {idle}, {store}: the sizes this run measures (Suite.idle_count, Suite.store_members).
    Scenario("{idle} idle gateway connections: server memory per connection", special="idle",
             backends=("memory",)),
    Scenario("{store} online in one group: memory per member (store in process, no sockets)",
             special="store_memory", backends=PRESENCE),
    Scenario("{store} online in one group: 500-row page latency (store in process)",
             special="store_page", backends=PRESENCE),
]


def count_label(n: int) -> str:
    """10000 -> "10k"; a count that is not whole thousands is written out (1,500)."""
    return f"{n // 1000:,}k" if n and n % 1000 == 0 else f"{n:,}"


# --- processes --------------------------------------------------------------------------


def pinned(core: int) -> list[str]:
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def free_port(avoid: Sequence[int] = ()) -> int:
    """A port free now on 127.0.0.1, other than ``avoid`` (ports already handed out)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def raise_nofile() -> None:
    """`ulimit -n <hard>` for this process and so for every server and client it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"{self.name}: no VmRSS")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} server exited ({self.proc.returncode}):\n"
                             + self.log.read_text()[-2000:])


@dataclass
class Processes:
    """Everything the current phase started; stop() ends each by its own process group."""

    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def server(self, name: str, argv: list[str], log: Path, *, core: int = 0,
               timeout: float = 60, avoid: Sequence[int] = ()) -> Server:
        port = free_port(avoid)
        with log.open("wb") as out:
            proc = subprocess.Popen([*pinned(core), *argv, "--port", str(port)], cwd=ROOT,
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

    def client(self, argv: list[str], log: Path) -> subprocess.Popen[str]:
        """A bench/clients.py process on core 1 that prints READY when it is set up."""
        with log.open("w") as err:
            proc = subprocess.Popen([*pinned(1), PY, CLIENTS, *argv], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.started.append(proc)
        return proc

    @staticmethod
    def ready(proc: subprocess.Popen[str], log: Path, timeout: float) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                if line.startswith("READY"):
                    return
                if not line:
                    break
        raise BenchError(f"client {' '.join(map(str, proc.args))[-120:]} not ready "
                         f"(exit {proc.poll()}):\n{log.read_text()[-1500:]}")

    def stop_one(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            killpg(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            killpg(proc, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        for proc in reversed(self.started):  # all told first: they stop in parallel
            if proc.poll() is None:
                killpg(proc, signal.SIGTERM)
        for proc in reversed(self.started):
            self.stop_one(proc)
        self.started.clear()


def killpg(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal a child's whole process group (it may have exited already)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a child to completion in its own process group; on timeout or interruption the
    group gets SIGINT (time to clean up its own children), then SIGKILL. ``env``: added to
    this process's environment."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, **env} if env else None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        killpg(proc, signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            killpg(proc, signal.SIGKILL)
            proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from None
        raise
    if proc.returncode != 0:
        raise BenchError(f"failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{out[-2000:]}\n{err[-2000:]}")
    return out


def wait_idle(servers: Sequence[Server], limit: float = 60) -> float | None:
    """Wait until every server uses under 12% of a core over 0.25 s; returns when that
    window began (time.monotonic()), or None after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        start, before = time.monotonic(), [s.cpu_seconds() for s in servers]
        time.sleep(0.25)
        if all(s.cpu_seconds() - b < 0.03 for s, b in zip(servers, before, strict=True)):
            return start
    return None


def bench_line(out: str, label: str) -> Any:
    line = next((x for x in reversed(out.splitlines()) if x.startswith("BENCH ")), None)
    if line is None:
        raise BenchError(f"{label} printed no result:\n{out[-2000:]}")
    return json.loads(line[6:])


# --- backends ---------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    db_url: str
    first_sdkappid: int  # distinct per backend: the bare app tells URLs apart by query
    version: str = ""
    redis: str | None = None  # presence in Redis; None: in process memory
    sdkappids: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)  # app label -> query string
    server: Server | None = None
    metrics_port: int = 0  # the server's /metrics listener (not on the API port)

    def create_apps(self, labels: dict[str, list[str]]) -> None:
        """One `opentim app create` per label (extra flags as given)."""
        for label, flags in labels.items():
            sdkappid = self.first_sdkappid + list(APPS).index(label)
            key = os.urandom(32).hex()
            run([PY, "-m", "opentim", "app", "create", "--sdkappid", str(sdkappid), "--key",
                 key, "--rate-limit", str(APPS[label]), "--db", self.db_url, *flags], 60)
            sig = usersig.generate(sdkappid, key, ADMIN)
            self.sdkappids[label], self.keys[label] = sdkappid, key
            self.queries[label] = (f"sdkappid={sdkappid}&identifier={ADMIN}&usersig={sig}"
                                   f"&random=99999999&contenttype=json")

    def start(self, procs: Processes, log: Path) -> Server:
        # Every server gets its metrics listener, as deployments that scrape it run; the
        # webhook rows read their counters from it.
        self.metrics_port = free_port()
        argv = [PY, "-m", "opentim", "serve", "--db", self.db_url, "--log-level", LOG_LEVEL,
                "--metrics-port", str(self.metrics_port)]
        self.server = procs.server(f"OpenTIM ({self.name})",
                                   argv + (["--redis", self.redis] if self.redis else []), log,
                                   avoid=[self.metrics_port])
        return self.server

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

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

    def gateway_args(self, app: str) -> list[str]:
        assert self.server is not None
        return ["--url", self.server.url, "--sdkappid", str(self.sdkappids[app]),
                "--key", self.keys[app]]


def pg(work: Any) -> Any:
    """Run one of scratch.py's PostgreSQL coroutines, bounded in time."""
    return asyncio.run(asyncio.wait_for(work, 30))


# --- load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One measurement: ``value`` is a rate (per second), a size (bytes per unit) or, for
    latency rows, the p50 in ms; cpu_us is the server process's CPU per operation."""

    value: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None


class Probe(Protocol):
    label: str

    def run(self, seconds: int) -> Load: ...


@dataclass
class WrkProbe:
    """wrk -t1 against one URL, POSTing the request files and checking every answer."""

    label: str
    url: str
    files: list[Path]  # request, expected answer[, request, expected answer]
    server: Server
    wrk_bin: str
    connections: int
    drain: bool = False  # count the time until the server is idle again in the rate
    busy: list[float] = field(default_factory=list)  # drain runs: server CPU ÷ wall time

    def run(self, seconds: int) -> Load:
        argv = [*pinned(1), self.wrk_bin, "-t1", f"-c{self.connections}", f"-d{seconds}s",
                "--timeout", "5s", "--latency", "-s", str(BENCH / "post.lua"), self.url, "--",
                *map(str, self.files)]
        cpu_before = self.server.cpu_seconds()
        out = run(argv, timeout=seconds + 30)
        extra = 0.0
        if self.drain:
            ended = time.monotonic()
            idle = wait_idle([self.server])
            if idle is None:
                raise BenchError(f"{self.label}: the server was still busy 60 s after the run")
            extra = max(0.0, idle - ended)
        cpu = self.server.cpu_seconds() - cpu_before
        r = bench_line(out, f"wrk for {self.label}")
        errors = {k: r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                    "status_errors", "timeouts", "bad_bodies") if r[k]}
        if r["requests"] == 0 or r["checked"] != r["requests"]:
            errors["unchecked"] = r["requests"] - r["checked"]
        if not all(r["matched"]):
            errors["answer kinds never seen"] = r["matched"]
        self.server.check_alive()
        if errors or not r["requests"]:
            raise BenchError(f"{self.label}: {r['requests']} requests, errors {errors}")
        seconds_taken = r["duration_us"] / 1e6 + extra
        if self.drain:
            self.busy.append(cpu / seconds_taken)
        return Load(r["requests"] / seconds_taken, r["p50_us"] / 1000, r["p99_us"] / 1000,
                    cpu / r["requests"] * 1e6)


@dataclass
class ClientProbe:
    """One bench/clients.py run on core 1; ``latency``: the row compares p50s, not rates."""

    label: str
    argv: list[str]
    server: Server | None = None
    latency: bool = False
    last: dict[str, Any] = field(default_factory=dict)  # the last run's raw result

    def run(self, seconds: int) -> Load:
        out = run([*pinned(1), PY, CLIENTS, *self.argv, "--seconds", str(seconds)],
                  seconds + 120)
        r = self.last = bench_line(out, self.label)
        if self.server is not None:
            self.server.check_alive()
        if not r["ops"]:
            raise BenchError(f"{self.label}: no operation completed")
        p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
        return Load(p50 if self.latency else r["ops"] / r["seconds"], p50, p99,
                    r["cpu_s"] / r["ops"] * 1e6)


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


# --- the run ----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    backend: str
    target: Probe | None = None
    base: Probe | None = None
    base_label: str = "bare ASGI, same bytes"
    unit: str = "req/s"
    kind: str = "rate"  # rate: higher is better; size: bytes per unit; latency: p50 in ms
    runs: list[tuple[Load, Load]] = field(default_factory=list)  # (measured, baseline)
    status: str = ""  # why there are no numbers, when there are none
    label: str = ""  # the scenario's name with this run's sizes filled in
    same_cpu: bool = True  # False: the baseline's CPU is another process's (Redis)


class Suite:
    def __init__(self, args: argparse.Namespace, tmp: Path, wrk_bin: str) -> None:
        self.args = args
        self.tmp = tmp
        self.wrk_bin = wrk_bin
        self.procs = Processes()
        self.rows = [Row(s, b) for s in SCENARIOS for b in s.backends]
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.import_output = ""
        self.databases: list[str] = []  # what announce() printed, repeated in the report
        self.pg_url = args.pg_url  # '' : no PostgreSQL
        self.pg_version: str | None = None
        self.pg_created = False  # the database exists now, made and marked by this run
        self.redis_url = ""  # the Redis database this run owns, once claimed
        self.prefix = f"opentim_bench_{os.getpid()}"  # bench/clients.py's own keys in it
        quick = args.quick
        self.idle_count = 1000 if quick else 10_000
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < self.idle_count + 500:
            self.idle_count = (hard - 500) // 1000 * 1000
            self.note(f"idle connections: the open-file limit ({hard}) allows only "
                      f"{self.idle_count:,}")
        self.store_members = 10_000 if quick else 100_000
        # Row labels carry the sizes actually measured (quick mode measures less).
        for r in self.rows:
            r.label = r.scenario.name.format(idle=count_label(self.idle_count),
                                             store=count_label(self.store_members))

    def row(self, special: str, backend: str) -> Row:
        return next(r for r in self.rows
                    if r.scenario.special == special and r.backend == backend)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def fail(self, rows: list[Row], exc: BenchError) -> None:
        self.failures.append(str(exc))
        print(f"  FAILED: {exc}", flush=True)
        for r in rows:
            if not r.runs and not r.status:
                r.status = "FAILED"

    def selected(self, *phases: str) -> bool:
        return not self.args.only or any(p in self.args.only for p in phases)

    def unreachable(self, what: str, url: str, exc: Exception) -> None:
        reason = f"{what} not reachable at {scratch.shown(url)}: {exc!r}"
        if os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1":
            raise BenchError(reason + " (OPENTIM_REQUIRE_SERVICES=1)") from None
        self.note("skipped " + reason)

    def announce(self) -> None:
        """Say exactly which databases the run will write to, before it touches any."""
        if not self.pg_url:
            self.say("PostgreSQL: none (--pg-url '')")
        elif not self.selected("rest", "imports"):
            self.say("PostgreSQL: not used by these phases (--only)")
        else:
            users = [w for p, w in (("rest", "the REST phase"),
                                    ("imports", "bench/import_members.py")) if self.selected(p)]
            self.say(f"PostgreSQL: {scratch.pg_describe(self.pg_url)} "
                     f"({scratch.shown(self.pg_url)}): created, marked as this run's and "
                     f"dropped by {' and again by '.join(users)} "
                     f"(refused if it exists and is not a dead bench run's)")
        url = self.args.redis_url
        if not url:
            self.say("Redis: none (--redis-url '')")
        elif not self.selected("presence", "store"):
            self.say("Redis: not used by these phases (--only)")
        else:
            self.say(f"Redis: {scratch.redis_describe(url)} ({scratch.shown(url)}): taken only "
                     f"if empty (claim key {scratch.CLAIM}); the servers write opentim:* keys "
                     f"and publish on channel opentim:rooms (pub/sub is server-wide, not per "
                     f"database), bench/clients.py writes {self.prefix}:*; those keys are "
                     f"unlinked at the end (never FLUSHDB)")

    def say(self, line: str) -> None:
        self.databases.append(line)
        print(f"bench: {line}", flush=True)

    def claim_redis(self) -> None:
        url = self.args.redis_url
        if not url or not self.selected("presence", "store"):
            return
        try:
            version, how = scratch.claim_redis(url, self.args.time_limit + 3600)
        except scratch.Refused as exc:
            raise BenchError(str(exc)) from None
        except Exception as exc:
            self.unreachable("Redis", url, exc)
            return
        self.redis_url = url
        self.versions.append(version)
        self.say(f"Redis: claimed {scratch.redis_describe(url)} ({how})")

    def create_postgres(self) -> str | None:
        """The run's PostgreSQL database, made now; returns the server version."""
        if not self.pg_url or not self.selected("rest"):
            return None
        try:
            version = str(pg(scratch.create_pg(self.pg_url)))
        except scratch.Refused as exc:
            raise BenchError(str(exc)) from None
        except Exception as exc:
            self.unreachable("PostgreSQL", self.pg_url, exc)
            return None
        self.pg_created = True
        self.say(f"PostgreSQL: created {scratch.pg_describe(self.pg_url)}")
        return version

    def drop_postgres(self) -> None:
        if not self.pg_created:
            return
        self.pg_created = False
        where = scratch.pg_describe(self.pg_url)
        try:
            dropped = pg(scratch.drop_pg(self.pg_url))
        except Exception as exc:  # still marked as this run's: the next run takes it over
            self.note(f"PostgreSQL {where}: could not drop it: {exc!r}")
            return
        if not dropped:
            self.note(f"PostgreSQL {where} no longer carries this run's mark: left alone")

    def run(self) -> None:
        self.announce()
        self.pg_version = self.create_postgres()
        self.claim_redis()
        phases: list[tuple[Callable[[], None], Callable[[Row], bool]]] = [
            (self.phase_rest, lambda r: r.backend in ("sqlite", "postgresql")
             and r.scenario.call is not None),
            (self.phase_presence, lambda r: r.backend in PRESENCE
             and not r.scenario.special.startswith(("store", "idle"))),
            (self.phase_idle, lambda r: r.scenario.special == "idle"),
            (self.phase_store, lambda r: r.scenario.special.startswith("store")),
            (self.phase_imports, lambda r: r.scenario.special == "imports"),
        ]
        for phase, mine in phases:
            if self.args.only and phase.__name__.removeprefix("phase_") not in self.args.only:
                for r in self.rows:
                    if mine(r):
                        r.status = r.status or "not run (--only)"
                continue
            doc = (phase.__doc__ or "").format(idle=count_label(self.idle_count),
                                               store=count_label(self.store_members))
            print(f"{phase.__name__}: {doc}", flush=True)
            try:
                phase()
            except BenchError as exc:
                self.fail([r for r in self.rows if mine(r)], exc)
            finally:
                self.procs.stop()

    def stop(self) -> None:
        self.procs.stop()
        with contextlib.suppress(Exception):
            self.drop_postgres()
        if self.redis_url:
            with contextlib.suppress(Exception):
                scratch.release_redis(self.redis_url)

    # --- REST rows under wrk ------------------------------------------------------------

    def write(self, name: str, data: bytes) -> Path:
        (self.tmp / name).write_bytes(data)
        return self.tmp / name

    def wrk_probe(self, label: str, url: str, calls: list[Call], answers: list[bytes],
                  server: Server, connections: int = 0) -> WrkProbe:
        files = []
        for call, answer in zip(calls, answers, strict=True):
            n = len(list(self.tmp.glob("req-*")))
            files += [self.write(f"req-{n}.json", json.dumps(call.body).encode()),
                      self.write(f"expect-{n}.json", answer)]
        return WrkProbe(label, url, files, server, self.wrk_bin,
                        connections or self.args.connections)

    @staticmethod
    def seed(b: Backend, calls: Iterator[Call]) -> None:
        """Make each setup call once on this backend (calls for apps it lacks are skipped)."""
        seen: set[str] = set()
        for call in calls:
            if call.key() not in seen and call.app in b.queries:
                seen.add(call.key())
                b.post(call)

    def plan_calls(self, backends: dict[str, Backend]) -> Server | None:
        """Probes for the REST rows of these backends; starts the bare app the rows that
        compare with it need (it also serves the WebSocket echo)."""
        bare_rows: list[tuple[Row, list[Call], list[bytes]]] = []
        for row in self.rows:
            s = row.scenario
            if s.call is None or row.backend not in backends or row.status:
                continue
            b = backends[row.backend]
            assert b.server is not None
            calls = [s.call] + ([s.alternate] if s.alternate else [])
            answers = [b.post(c) for c in calls]
            label = f"{s.call.path} on {b.name}" + ("" if s.call.app == "off" else
                                                    f", rate limit {APPS[s.call.app]:,}")
            row.target = self.wrk_probe(label, b.url(s.call), calls, answers, b.server,
                                        s.connections)
            row.target.drain = s.drain
            if isinstance(s.baseline, Call):
                row.base_label = ("OpenTIM, rate limit off" if s.baseline.path == s.call.path
                                  else f"OpenTIM {s.baseline.path}")
                row.base = self.wrk_probe(label + " (baseline)", b.url(s.baseline),
                                          [s.baseline], [b.post(s.baseline)], b.server)
            elif b.redis and s.redis_baseline:
                links = min(8, row.target.connections)
                row.base_label = (f"raw Redis: 500×(HSET+ZADD), then 500×(HDEL+ZREM), each "
                                  f"one pipeline, {links} connection(s)")
                row.same_cpu = False
                row.base = ClientProbe("raw Redis marks", [
                    s.redis_baseline, "--redis", self.redis_url, "--prefix", self.prefix,
                    "--count", str(links), "--members", "500"])
            else:
                bare_rows.append((row, calls, answers))
        entries = []
        for row, calls, answers in bare_rows:
            reencode = row.scenario.baseline == "reencode"
            if reencode:
                row.base_label = "bare ASGI, msgspec re-encode of the same document"
            assert isinstance(row.target, WrkProbe)
            path, _, query = row.target.url.partition("/v4/")[2].partition("?")
            for call, answer in zip(calls, answers, strict=True):
                entries.append({"path": "/v4/" + path, "query": query, "reencode": reencode,
                                "request_b64": base64.b64encode(json.dumps(call.body).encode()
                                                                ).decode(),
                                "body_b64": base64.b64encode(answer).decode()})
        bodies = self.write(f"bare-bodies-{len(list(self.tmp.glob('bare-*')))}.json",
                            json.dumps(entries).encode())
        bare = self.procs.server("bare ASGI", [PY, BARE, "--bodies", str(bodies),
                                               "--log-level", LOG_LEVEL],
                                 self.tmp / f"bare-{bodies.stem}.log")
        for row, calls, answers in bare_rows:
            t = row.target
            assert isinstance(t, WrkProbe)
            row.base = WrkProbe(t.label + " (bare)", bare.url + t.url[len(t.server.url):],
                                t.files, bare, self.wrk_bin, t.connections)
            for call, answer in zip(calls, answers, strict=True):
                got = httpx.post(row.base.url, content=json.dumps(call.body).encode(),
                                 timeout=10, trust_env=False).content
                if got != answer:
                    raise BenchError(f"bare app answered {got[:200]!r} for {t.label}")
        return bare

    def measure(self, rows: list[Row], rounds: int, servers: Sequence[Server] = ()) -> None:
        """Paired runs of each row's probe and baseline; ``servers``: wait for them to go
        idle after every run, so one run's aftermath (pushes, webhooks) stays in it."""
        pairs = [r for r in rows if r.target and r.base and not r.status]
        seconds = self.args.seconds

        def run(probe: Probe, seconds: int) -> Load:
            load = probe.run(seconds)
            self.settle(servers)
            return load

        if not self.args.quick:
            for r in pairs:  # warm caches, pools and sigs; not counted
                for probe in (r.base, r.target):
                    assert probe is not None
                    self.guard(r, lambda p=probe: run(p, 1))
        for n in range(rounds):
            for r in pairs:
                if r.status:
                    continue
                assert r.target and r.base
                # Alternate who goes first so a slow spell on the machine hits both sides.
                first, second = (r.base, r.target) if n % 2 == 0 else (r.target, r.base)
                loads = []
                for probe in (first, second):
                    load = self.guard(r, lambda p=probe: run(p, seconds))
                    if load is None:
                        break
                    loads.append(load)
                else:
                    base, measured = loads if first is r.base else loads[::-1]
                    r.runs.append((measured, base))
                    print(f"  round {n + 1}: {r.label[:60]} [{r.backend}]: "
                          f"{measured.value:,.2f} vs baseline {base.value:,.2f}", flush=True)

    def settle(self, servers: Sequence[Server]) -> None:
        if servers and wait_idle(servers) is None:
            self.note("servers still busy 60 s after a run")

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

    # --- phase 1: REST on SQLite and PostgreSQL ------------------------------------------

    def phase_rest(self) -> None:
        """REST calls on SQLite and PostgreSQL"""
        backends = {"sqlite": Backend("sqlite", f"sqlite:///{self.tmp}/bench.db", 1400000100,
                                      version="SQLite " + sqlite3.sqlite_version)}
        if self.pg_created:
            backends["postgresql"] = Backend("postgresql", self.pg_url, 1400000200,
                                             version=f"PostgreSQL {self.pg_version}")
        for row in self.rows:
            if row.backend == "postgresql" and "postgresql" not in backends:
                row.status = "skipped: no postgresql"
        for b in backends.values():
            self.versions.append(b.version)
            b.create_apps({"off": [], "high": []})
            b.start(self.procs, self.tmp / f"{b.name}.log")
        for b in backends.values():  # setup data on both apps
            self.seed(b, (Call(c.path, c.body, app=app) for app in ("off", "high")
                          for s in SCENARIOS if b.name in s.backends for c in s.setup))
        self.plan_calls(backends)
        self.measure([r for r in self.rows if r.backend in backends], self.args.rounds)
        self.procs.stop()  # the servers hold connections to the database
        self.drop_postgres()

    # --- phase 2: presence, gateway and webhooks ----------------------------------------

    def phase_presence(self) -> None:
        """presence on the memory and Redis backends, through the gateway"""
        receiver = self.procs.server("webhook receiver", [PY, BARE, "--log-level", LOG_LEVEL],
                                     self.tmp / "receiver.log", core=1)
        backends = {"memory": Backend("memory", f"sqlite:///{self.tmp}/memory.db", 1400000300)}
        if self.redis_url:
            backends["redis"] = Backend("redis", f"sqlite:///{self.tmp}/redis.db", 1400000400,
                                        redis=self.redis_url)
        for row in self.rows:
            if row.backend == "redis" and not self.redis_url:
                row.status = "skipped: no Redis"
        hook = ["--callback-url", f"{receiver.url}/callback", "--callback-command",
                MEMBER_STATE_CHANGE]
        for b in backends.values():
            b.create_apps({"off": [], **({"hook": hook} if b.name == "memory" else {})})
            b.start(self.procs, self.tmp / f"{b.name}.log")
        for b in backends.values():
            self.seed(b, (c for s in SCENARIOS if b.name in s.backends for c in s.setup))
        holders = {(b.name, group): self.procs.client(
            ["hold", *b.gateway_args("off"), "--prefix", prefix, "--count", str(count),
             "--join", group], self.tmp / f"hold-{b.name}-{group}.log")
            for b in backends.values() for group, (prefix, count) in HELD.items()}
        for (name, group), proc in holders.items():
            self.procs.ready(proc, self.tmp / f"hold-{name}-{group}.log", 180)
        for b in backends.values():
            self.seed(b, (c for s in SCENARIOS if b.name in s.backends for c in s.after_join))
        bare = self.plan_calls(backends)
        assert bare is not None
        self.plan_gateway(backends, bare)
        servers = [b.server for b in backends.values() if b.server is not None]
        # modify_user_info goes last: each call pushes marks_changed with 500 members to the
        # 500 held connections of its group, work that would spill into the rows after it.
        rows = [r for r in self.rows if r.backend in backends and r.target]
        self.measure([r for r in rows if not r.scenario.drain],
                     self.args.presence_rounds, servers)
        self.check_online(backends, holders, "after the gateway rows")
        if "memory" in backends:
            row = self.row("webhooks", "memory")
            try:
                self.measure_webhooks(row, backends["memory"], receiver)
            except BenchError as exc:
                self.fail([row], exc)
        self.check_online(backends, holders, "after the webhook rows")
        last = [r for r in rows if r.scenario.drain]
        self.measure(last, self.args.presence_rounds, servers)
        for r in last:
            if isinstance(r.target, WrkProbe) and r.target.busy:
                busy = statistics.median(r.target.busy)
                self.note(f"{r.label.split(';')[0]} [{r.backend}]: the server was busy "
                          f"{busy:.0%} of the run (its CPU time ÷ wall time, drain included)")
        self.check_online(backends, holders, "after modify_user_info")

    def check_online(self, backends: dict[str, Backend],
                     holders: dict[tuple[str, str], subprocess.Popen[str]], when: str) -> None:
        """The held members must all still be online, their holder processes alive."""
        for (name, group), proc in holders.items():
            count = Call("group_open_http_svc/get_online_member_num", {"GroupId": group})
            online = json.loads(backends[name].post(count))["OnlineMemberNum"]
            if online != HELD[group][1] or proc.poll() is not None:
                raise BenchError(f"{name}, {when}: {online} of {HELD[group][1]} held members "
                                 f"of {group} online, holder exit code {proc.poll()}; see "
                                 f"{self.tmp / f'hold-{name}-{group}.log'}")

    def churn_probe(self, label: str, b: Backend, app: str, groups: tuple[str, ...],
                    *extra: str, latency: bool = False) -> ClientProbe:
        assert b.server is not None
        return ClientProbe(label, [
            "churn", *b.gateway_args(app), "--prefix", "bench_c_", "--count", str(CHURNERS),
            "--groups", ",".join(groups), "--server-pid", str(b.server.proc.pid), *extra],
            b.server, latency)

    def plan_gateway(self, backends: dict[str, Backend], bare: Server) -> None:
        # pairs/s, 2 callbacks each: well below what delivery sustains (~600/s measured)
        rate = "100" if self.args.quick else "150"
        for row in self.rows:
            b = backends.get(row.backend)
            special = row.scenario.special
            if b is None or row.status or special not in ("heartbeats", "churn",
                                                          "hook_latency"):
                continue
            if special == "heartbeats":
                row.unit = "round trips/s"
                row.target = self.churn_probe("heartbeats", b, "off", (CHURN,), "--op",
                                              "heartbeat")
                row.base = ClientProbe("heartbeats, bare echo", [
                    "churn", "--url", bare.url, "--sdkappid", "1", "--key", "x", "--count",
                    str(CHURNERS), "--groups", CHURN, "--op", "heartbeat", "--server-pid",
                    str(bare.proc.pid)], bare)
                row.base_label = "bare ASGI WebSocket echo, same client"
            elif special == "churn":
                if not self.redis_url:
                    row.status = "skipped: no Redis for the baseline"
                    continue
                row.unit, row.same_cpu = "members/s", False
                row.target = self.churn_probe(f"churn on {b.name}", b, "off", (CHURN,))
                row.base = ClientProbe("raw Redis churn", [
                    "redis-churn", "--redis", self.redis_url, "--prefix", self.prefix,
                    "--count", str(CHURNERS)])
                row.base_label = ("raw Redis: a join's INCR+ZADD+HSET+HINCRBY+HSET, a leave's "
                                  "4 HDEL/ZREM, 2 pipelines, redis-py asyncio, 64 tasks")
            else:
                row.kind, row.unit = "latency", "ms"
                row.target = self.churn_probe("paced churn, webhooks on", b, "hook",
                                              HOOK_GROUPS, "--rate", rate, latency=True)
                row.base = self.churn_probe("paced churn, webhooks off", b, "off",
                                            (CHURN,), "--rate", rate, latency=True)
                row.base_label = f"same, app without callback URL ({rate} pairs/s)"

    def measure_webhooks(self, row: Row, b: Backend, receiver: Server) -> None:
        """Flat-out churn on the app with webhooks fills the delivery queues; the rate at
        which they drain is the delivery throughput. Baseline: the receiver's own max."""
        assert b.server is not None
        row.unit, row.base_label = "deliveries/s", "the receiver's own max under wrk"
        twin = self.procs.server("receiver (baseline)", [PY, BARE, "--log-level", LOG_LEVEL],
                                 self.tmp / "receiver-twin.log")
        sample = json.dumps({"CallbackCommand": MEMBER_STATE_CHANGE, "GroupId": HOOK_GROUPS[0],
                             "Type": "AVChatRoom", "EventType": "Online", "EventCause": "Join",
                             "MemberList": [{"Member_Account": "bench_c_0"}],
                             "EventTime": "1795381924000"}).encode()
        query = f"SdkAppid={b.sdkappids['hook']}&CallbackCommand={MEMBER_STATE_CHANGE}"
        base_probe = WrkProbe("receiver under wrk", f"{twin.url}/callback?{query}&contenttype="
                              "json", [self.write("callback.json", sample), self.write(
                                  "callback-ok.json", b'{"ActionStatus":"OK","ErrorCode":0,'
                                  b'"ErrorInfo":""}')], twin, self.wrk_bin,
                              self.args.connections)
        churn = self.churn_probe("churn with webhooks", b, "hook", HOOK_GROUPS)
        for _ in range(1 if self.args.quick else 3):
            base = base_probe.run(self.args.seconds)
            measured = self.delivery(b, receiver, churn, b.sdkappids["hook"])
            row.runs.append((measured, base))
            print(f"  webhooks: {measured.value:,.0f} deliveries/s, receiver alone "
                  f"{base.value:,.0f} req/s", flush=True)

    def delivery(self, b: Backend, receiver: Server, churn: ClientProbe, app: int) -> Load:
        assert b.server is not None
        server = b.server

        def metrics() -> dict[str, float]:
            answer = httpx.get(b.metrics_url, timeout=10, trust_env=False)
            if answer.status_code != 200 or "opentim_webhook_queued " not in answer.text:
                raise BenchError(f"{b.metrics_url} answered {answer.status_code}: "
                                 f"{answer.text[:200]!r}")
            text = answer.text
            found = {"sent": 0.0, "dropped": 0.0, "failed": 0.0, "retried": 0.0}
            for line in text.splitlines():
                if line.startswith("opentim_webhook_deliveries_total{") and \
                        f'sdkappid="{app}"' in line:
                    found[line.split('outcome="')[1].split('"')[0]] = float(line.split()[-1])
                elif line.startswith("opentim_webhook_queued "):
                    found["queued"] = float(line.split()[-1])
            return found

        def received() -> int:
            return int(httpx.get(receiver.url + "/count", timeout=10, trust_env=False).text)

        m0, r0, t0, cpu0 = metrics(), received(), time.monotonic(), server.cpu_seconds()
        load = churn.run(1)  # ~3k pairs: 6k callbacks, within the 10k queue of the app
        events = 2 * churn.last["ops"]
        t1, cpu1, m1 = time.monotonic(), server.cpu_seconds(), metrics()
        deadline = t1 + 120
        while True:
            m2 = metrics()
            if sum(m2[k] - m0[k] for k in ("sent", "dropped", "failed")) >= events or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
        t2, cpu2 = time.monotonic(), server.cpu_seconds()
        sent, dropped, failed = (m2[k] - m0[k] for k in ("sent", "dropped", "failed"))
        drained = m2["sent"] - m1["sent"]
        if failed or sent + dropped < events:
            raise BenchError(f"webhooks: {events} callbacks, {sent:.0f} sent, {dropped:.0f} "
                             f"dropped, {failed:.0f} failed, still queued after 120 s")
        if received() - r0 < sent:
            raise BenchError(f"webhooks: the receiver got {received() - r0} of {sent:.0f}")
        if m1["queued"] < 200 or drained <= 0:
            self.note(f"webhooks: the queues never built up ({m1['queued']:.0f} queued when "
                      "churn stopped): the figure is deliveries during churn, a lower bound")
            return Load(sent / (t2 - t0), cpu_us=(cpu2 - cpu0) / sent * 1e6)
        self.note(f"webhooks: churn with webhooks on ran {load.value:,.0f} pairs/s "
                  f"({events:,} callbacks): {m1['sent'] - m0['sent']:,.0f} delivered during "
                  f"it, {m1['queued']:,.0f} queued at its end, {dropped:,.0f} dropped "
                  f"(queues full), {m2['retried'] - m0['retried']:,.0f} retried; the queue "
                  f"then drained at the rate shown, {len(HOOK_GROUPS)} groups, up to "
                  f"{WebhookSettings().concurrency} in flight")
        return Load(drained / (t2 - t1), cpu_us=(cpu2 - cpu1) / drained * 1e6)

    # --- phase 3: idle connections -------------------------------------------------------

    def phase_idle(self) -> None:
        """{idle} idle gateway connections: server memory"""
        row = self.row("idle", "memory")
        count = self.idle_count
        row.kind, row.unit = "size", "conn"
        row.base_label = f"bare uvicorn WebSocket echo, same {count:,} connections"
        b = Backend("idle", f"sqlite:///{self.tmp}/idle.db", 1400000500)
        b.create_apps({"off": []})
        server = b.start(self.procs, self.tmp / "idle.log")
        measured = self.hold_memory(server, b.gateway_args("off"), count)
        self.procs.stop_one(server.proc)  # not busy closing 10k sockets during the baseline
        bare = self.procs.server("bare WebSocket", [PY, BARE, "--log-level", LOG_LEVEL],
                                 self.tmp / "bare-ws.log")
        base = self.hold_memory(bare, ["--url", bare.url, "--sdkappid", "1", "--key", "x"],
                                count)
        row.runs.append((Load(measured), Load(base)))

    def hold_memory(self, server: Server, gateway: list[str], count: int) -> float:
        """Server RSS growth per connection, from 20 warm-up connections to 20 + count."""
        log = self.tmp / f"hold-{server.port}"
        warm = self.procs.client(["hold", *gateway, "--prefix", "bench_w_", "--count", "20"],
                                 log.with_suffix(".warm"))
        self.procs.ready(warm, log.with_suffix(".warm"), 60)
        time.sleep(1)
        before = server.rss()
        per = math.ceil(count / (1 if count <= 2500 else 4))  # one process per 2,500
        holders = [self.procs.client(["hold", *gateway, "--prefix", "bench_i_", "--first",
                                      str(first), "--count", str(per)],
                                     log.with_suffix(f".{first}"))
                   for first in range(0, count, per)]
        for proc, first in zip(holders, range(0, count, per), strict=True):
            self.procs.ready(proc, log.with_suffix(f".{first}"), 300)
        time.sleep(2)
        after = server.rss()
        server.check_alive()
        for proc in [*holders, warm]:
            if proc.poll() is not None:
                raise BenchError(f"{server.name}: held connections were dropped")
        self.note(f"{server.name}: RSS {before / 2**20:.1f} MiB with 20 connections, "
                  f"{after / 2**20:.1f} MiB with {20 + count:,}")
        for proc in [*holders, warm]:
            self.procs.stop_one(proc)
        return (after - before) / count

    # --- phase 4: the presence store at 100k members -------------------------------------

    def phase_store(self) -> None:
        """the presence store in process: memory and page latency at {store} members"""
        members = self.store_members
        calls = "200" if self.args.quick else "1000"

        def store(backend: str) -> Any:
            out = run([*pinned(0), PY, CLIENTS, "store", "--backend", backend, "--members",
                       str(members), "--calls", calls, "--redis", self.redis_url,
                       "--prefix", self.prefix], 600)
            return bench_line(out, f"store {backend}")

        for backend, baseline in (("memory", "dict"), ("redis", "redis-raw")):
            mem_row, page_row = self.row("store_memory", backend), self.row("store_page",
                                                                            backend)
            if backend == "redis" and not self.redis_url:
                mem_row.status = page_row.status = "skipped: no Redis"
                continue
            mem_row.kind, mem_row.unit = "size", "member"
            page_row.kind, page_row.unit = "latency", "ms"
            try:
                got, base = store(backend), store(baseline)
            except BenchError as exc:
                self.fail([mem_row, page_row], exc)
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
                self.note(f"store, memory: {members:,} joins in {got['join_s']:.2f} s; RSS "
                          f"growth, a fresh process each; {marks}")
            else:
                mem_row.base_label = "raw Redis: ZADD order + HSET rows + HSET conn ids"
                raw = base[f"page_{members}"]
                self.note(f"store, Redis: {members:,} joins in {got['join_s']:.2f} s (64 in "
                          f"flight); used_memory growth less client buffers (all of Redis: "
                          f"other clients' writes add noise); MEMORY USAGE of the keys: "
                          f"{got['usage'] / members:,.0f} B/member, raw "
                          f"{base['usage'] / members:,.0f}; raw ZREVRANGE + HMGET of 500: "
                          f"p50 {raw['p50_us']:,.0f} µs, p99 {raw['p99_us']:,.0f} µs; {marks}")
            page_row.base_label = "the same page at 500 members"

    # --- phase 5: import_group_member ----------------------------------------------------

    def phase_imports(self) -> None:
        """bench/import_members.py"""
        flags = ["--quick"] if self.args.quick else []
        # The same database as the REST phase (dropped by then), made and dropped again by
        # import_members.py; passed in the environment so no password shows in argv.
        env, shown = {}, ""
        if self.pg_url:
            env["OPENTIM_BENCH_POSTGRES_URL"] = self.pg_url
            shown = f"OPENTIM_BENCH_POSTGRES_URL={scratch.shown(self.pg_url)} "
        else:
            flags += ["--db", "sqlite"]
        out = run([PY, str(BENCH / "import_members.py"), *flags],
                  120 if self.args.quick else 3600, env)
        self.import_output = (f"$ {shown}python bench/import_members.py {' '.join(flags)}\n"
                              f"{out}")
        results = bench_line(out, "import_members.py")
        for row in self.rows:
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


# --- report -----------------------------------------------------------------------------


def dur(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:,.2f} ms" if abs(ms) >= 1 else f"{ms * 1000:,.0f} µs"


def size(n: float) -> str:
    return f"{n / 1024:,.1f} KB" if abs(n) >= 1024 else f"{n:,.0f} B"


def med(values: Iterator[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def cells(row: Row, loads: list[Load]) -> list[str]:
    value = statistics.median(x.value for x in loads)
    shown = {"rate": f"{value:,.0f} {row.unit}", "size": f"{size(value)}/{row.unit}",
             "latency": f"{dur(value)} p50"}[row.kind]
    cpu = med(x.cpu_us for x in loads)
    return [shown, dur(med(x.p50_ms for x in loads)), dur(med(x.p99_ms for x in loads)),
            "—" if cpu is None else f"{cpu:,.1f} µs"]


def render(rows: list[Row]) -> str:
    head = ("| scenario | backend | result | p50 | p99 | server CPU/op | baseline | base result "
            "| base p50 | base p99 | base CPU/op | ratio (range) | added per op | added CPU/op |")
    lines = [head, "|---|---|" + "---:|" * 4 + "---|" + "---:|" * 7]
    for r in rows:
        if not r.runs or r.status:
            lines.append(f"| {r.label} | {r.backend} | {r.status or 'no result'} |"
                         + " — |" * 11)
            continue
        ratios = [x.value / y.value for x, y in r.runs]
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        if r.kind == "rate":
            per_op = statistics.median(1e6 / x.value - 1e6 / y.value for x, y in r.runs)
            added = f"{per_op:+,.1f} µs"
        elif r.kind == "size":
            diff = statistics.median(x.value - y.value for x, y in r.runs)
            added = ("+" if diff >= 0 else "−") + size(abs(diff))
        else:
            diff = statistics.median(x.value - y.value for x, y in r.runs)
            added = ("+" if diff >= 0 else "−") + dur(abs(diff))
        cpu = med(x.cpu_us - y.cpu_us if x.cpu_us is not None and y.cpu_us is not None
                  and r.same_cpu else None for x, y in r.runs)
        row = [r.label, r.backend, *cells(r, [x for x, _ in r.runs]), r.base_label,
               *cells(r, [y for _, y in r.runs]), f"{statistics.median(ratios):.2f}×{spread}",
               added, "—" if cpu is None else f"{cpu:+,.1f} µs"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets, each with its same-run ratio; reported, never enforced."""
    out = []

    def find(name: str, backend: str) -> Row | None:
        return next((r for r in rows if r.label.startswith(name)
                     and r.backend == backend and r.runs and not r.status), None)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    for name in ("get_members, 500-row", "get_members, Mark 1000"):
        memory, redis = find(name, "memory"), find(name, "redis")
        if memory:
            ratio = statistics.median(x.value / y.value for x, y in memory.runs)
            out.append(f"- {name}…, memory backend: {ratio:.2f}× the bare re-encoding app "
                       f"(target ≥ 0.50×): {verdict(ratio >= 0.5)}")
        if memory and redis:
            pairs = list(zip(redis.runs, memory.runs, strict=False))
            direct = statistics.median(r[0].value / m[0].value for r, m in pairs)
            normal = statistics.median((r[0].value / r[1].value) / (m[0].value / m[1].value)
                                       for r, m in pairs)
            out.append(f"- {name}…, Redis backend: {direct:.2f}× memory's req/s (memory is "
                       f"{1 / direct:.2f}× faster; each against its own bare baseline: "
                       f"{normal:.2f}×) (target: within 2×): {verdict(direct >= 0.5)}")
    for r in rows:
        if r.scenario.special == "imports" and r.runs:
            ratio = r.runs[0][0].value / r.runs[0][1].value
            out.append(f"- import_group_member, {r.backend}: {ratio:.0%} of the {r.base_label}"
                       f" (target ≥ 50%): {verdict(ratio >= 0.5)}")
    return out


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


def machine(versions: list[str], wrk_bin: str) -> str:
    import uvicorn
    import websockets

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
            f"{platform.python_version()}, uvicorn {uvicorn.__version__}, websockets "
            f"{websockets.__version__}; {wrk_version.split(' [')[0].strip() or 'wrk'}; "
            f"open files {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; "
            + ", ".join(versions))


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run (CI): 1 round of 1 s per run, no warm-up, 1k idle "
                        "connections, 10k store members, 20k imported members")
    p.add_argument("--rounds", type=int, help="alternating runs per REST pair (default 5)")
    p.add_argument("--presence-rounds", type=int,
                   help="alternating runs per presence/gateway pair (default 3)")
    p.add_argument("--seconds", type=int, help="duration of each run (default 5)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pg-url", default=os.environ.get("OPENTIM_BENCH_POSTGRES_URL", PG_URL),
                   help="the PostgreSQL database the run creates, marks as its own and "
                        "drops (refused if it exists and is not a dead bench run's); env "
                        f"OPENTIM_BENCH_POSTGRES_URL; default {PG_URL}; '' to skip PostgreSQL")
    p.add_argument("--redis-url", default=os.environ.get("OPENTIM_BENCH_REDIS_URL", REDIS_URL),
                   help="the Redis database (…/N) the run claims: refused unless empty or "
                        "left by a dead bench run; env OPENTIM_BENCH_REDIS_URL; default "
                        f"{REDIS_URL}; '' to skip Redis")
    p.add_argument("--only", type=lambda v: v.split(","), default=[],
                   help="run only these phases: rest,presence,idle,store,imports")
    p.add_argument("--time-limit", type=int, help="seconds before the whole run is stopped "
                   "as failed (default 600 quick, 3600 full)")
    args = p.parse_args(argv)
    try:
        if args.pg_url:
            scratch.pg_name(args.pg_url)
        if args.redis_url:
            scratch.redis_describe(args.redis_url)
    except ValueError as exc:
        p.error(str(exc))
    for old, new in (("OPENTIM_BENCH_POSTGRES", "OPENTIM_BENCH_POSTGRES_URL (the database's "
                      "URL, e.g. …/opentim_bench)"), ("OPENTIM_BENCH_REDIS",
                      "OPENTIM_BENCH_REDIS_URL (a database's URL, e.g. …/15)")):
        if old in os.environ:  # a server URL once; silently ignoring it would mislead
            p.error(f"{old} is no longer read: set {new}")
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.presence_rounds = args.presence_rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (1 if args.quick else 5)
    args.time_limit = args.time_limit or (600 if args.quick else 3600)
    return args


def on_term(*_: Any) -> None:
    raise Terminated


def over_time(*_: Any) -> None:
    raise OverTime


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, over_time)
    signal.alarm(args.time_limit)
    raise_nofile()
    wrk_bin = ensure_wrk(args.quick)
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opentim-bench-") as tmp:
        suite = Suite(args, Path(tmp), wrk_bin)
        try:
            suite.run()
        finally:
            suite.stop()
    signal.alarm(0)
    pin = ("servers on core 0, wrk and clients on core 1" if pinned(0)
           else "no CPU pinning (taskset missing)")
    report = "\n".join([
        f"OpenTIM bench ({mode}): `{' '.join(['bench/run', *argv])}`",
        f"machine: {machine(suite.versions, wrk_bin)}",
        *(f"databases: {line}" for line in suite.databases),
        f"load: wrk -t1 -c{args.connections}; REST {args.rounds} round(s), presence "
        f"{args.presence_rounds} round(s), {args.seconds} s per run, medians; {pin}; server "
        f"log level {LOG_LEVEL}",
        "",
        render(suite.rows),
        "",
        "ratio: measured ÷ baseline, median (and range) of paired rounds; for memory and "
        "latency rows lower is better. Added per op: 1/rate − 1/base rate (rates), or the "
        "difference (sizes, latencies); added CPU: the server process's own CPU time per "
        "operation minus the baseline's (/proc; excludes PostgreSQL's and Redis's processes, "
        "except in raw-Redis baselines, which show Redis's own CPU).",
        "",
        "targets (reported, not enforced):",
        *targets(suite.rows),
        "",
        limiter_cost(),
        *suite.notes,
        f"took {time.monotonic() - started:.0f} s",
    ])
    print("\n" + report + "\n", flush=True)
    print(suite.import_output)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"{stamp}-{mode}.md").write_text(f"{report}\n\n{suite.import_output}")
    for failure in suite.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if suite.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except OverTime:
        print("bench: FAILED: over the time limit (--time-limit); everything it started is "
              "stopped", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as exc:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(143 if isinstance(exc, Terminated) else 130)
