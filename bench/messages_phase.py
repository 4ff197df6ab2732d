"""The messages phase: group messages fanned out through the gateway, against a bare
WebSocket broadcast server (bench/bare_ws.py) on the same uvicorn stack.

For each size, one bench/fanout.py process (core 1) holds the connections to OpenTIM and
sends its messages (send_group_msg, as the App admin speaking as an imported account),
and another holds as many connections to the bare server and sends it the frame OpenTIM
pushed (captured from a warm-up message), its time digits replaced, to broadcast. Both
stay connected for every round, so the paired rounds alternate without reconnecting.

* fanout_1k, fanout_10k: one OpenTIM process (memory presence), 4 messages in flight:
  deliveries/s to the clients, end-to-end delay p50/p99 (send → receipt), the server's CPU
  per delivery.
* fanout_2p: two OpenTIM processes sharing Redis presence and one SQLite file, 500
  connections each, messages sent to the first; baseline: two bare servers relaying each
  broadcast through Redis pub/sub.
* fanout_rate: 100 messages/s on a fixed schedule into the 1,000 connections; delays count
  from the schedule.

Every server is on core 0, and the client processes on core 1 also do the receiving: the
client's own CPU use is reported, since above ~90% of its core it, not the server, sets the
rate.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import Backend
from probes import FleetProbe
from processes import BARE_WS, FANOUT, LOG_LEVEL, PY, BenchError, Server
from report import Row
from scenarios import Call, av_group, import_accounts

if TYPE_CHECKING:
    from harness import Suite

PREFIX, SENDER = "bench_f_", "bench_f_host"
WINDOW = 4  # messages in flight in the flat-out rows
RATE = 100  # messages/s of the rate row
# ... sent for at most this long a run: 200,000 delays are plenty for a p99, and a server
# that cannot keep up takes many times as long to drain the backlog.
RATE_SECONDS = 2
SEND = "group_open_http_svc/send_group_msg"
# special -> (group, connections)
SIZES = {"fanout_1k": ("bench_fan_1k", 1000), "fanout_10k": ("bench_fan_10k", 10_000),
         "fanout_2p": ("bench_fan_2p", 1000)}


def phase_messages(suite: Suite) -> None:
    """group messages through the gateway: fan-out to 1k / 10k connections, two processes on
    Redis, 100 messages/s, against a bare WebSocket broadcast server"""
    rows = {special: suite.row(special, backend) for special, backend in (
        ("fanout_1k", "memory"), ("fanout_10k", "memory"), ("fanout_2p", "redis"),
        ("fanout_rate", "memory"))}
    if suite.args.quick:
        for special in ("fanout_10k", "fanout_2p"):
            rows[special].status = "not run in quick mode"
    if not suite.db.redis_url:
        rows["fanout_2p"].status = rows["fanout_2p"].status or "skipped: no Redis"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 10_000 + 600 and not rows["fanout_10k"].status:
        rows["fanout_10k"].status = f"skipped: the open-file limit ({hard}) is under 10,600"
    largest = max((n for special, (_, n) in SIZES.items() if not rows[special].status),
                  default=1000)
    db = f"sqlite:///{suite.tmp}/fanout.db"
    b = Backend("memory", db, 1400000600)
    b.create_apps({"off": ["--group-msg-rate", "0"]})  # 40/s per group would refuse most
    server = b.start(suite.procs, suite.tmp / "fanout.log")
    setup = [*import_accounts(PREFIX, largest), Call(
        "im_open_login_svc/multiaccount_import", {"AccountList": [{"UserID": SENDER}]}),
        *(av_group(group) for group, _ in SIZES.values())]
    for call in setup:
        b.post(call)
    for special in ("fanout_1k", "fanout_10k"):
        row = rows[special]
        if row.status:
            continue
        extra = [rows["fanout_rate"]] if special == "fanout_1k" else []
        try:
            fan_out(suite, special, row, [b], extra)
        except BenchError as exc:
            suite.fail([row, *extra], exc)
    suite.procs.stop_one(server.proc)
    row = rows["fanout_2p"]
    if not row.status:
        pair = [Backend(f"redis {n}", db, 1400000600, redis=suite.db.redis_url)
                for n in (1, 2)]
        for p in pair:  # the same app (one database): the same SDKAppID and key
            p.sdkappids, p.keys, p.queries = b.sdkappids, b.keys, b.queries
            p.start(suite.procs, suite.tmp / f"fanout-{p.name.replace(' ', '')}.log")
        try:
            fan_out(suite, "fanout_2p", row, pair, [])
        except BenchError as exc:
            suite.fail([row], exc)


def fan_out(suite: Suite, special: str, row: Row, backends: list[Backend],
            extra: list[Row]) -> None:
    """Both sides' clients connected and joined, then the paired rounds of ``row`` (and of
    the rate row in ``extra``); stops what it started."""
    group, count = SIZES[special]
    servers = [b.server for b in backends if b.server is not None]
    first = backends[0]
    started: list[subprocess.Popen[Any]] = []
    try:
        gateways = [s.url for s in servers]
        send = Call(SEND, {})
        opentim = fleet(suite, f"{special}-opentim", first, gateways,
                        first.url(send), group, count, servers, ["--capture"])
        started.append(opentim[0])
        frame = json.loads(opentim[1].removeprefix("READY "))["frame_b64"]
        channel = ["--redis", suite.db.redis_url, "--channel",
                   f"{suite.db.prefix}:bare"] if len(backends) > 1 else []
        bare = [suite.procs.server(f"bare broadcast {n + 1}",
                                   [PY, BARE_WS, "--log-level", LOG_LEVEL, *channel],
                                   suite.tmp / f"bare-ws-{special}-{n}.log")
                for n in range(len(backends))]
        started += [s.proc for s in bare]
        base = fleet(suite, f"{special}-bare", first, [s.url for s in bare],
                     f"{bare[0].url}/broadcast?group={group}", group, count, bare,
                     ["--template", frame])
        started.append(base[0])
        where = "two processes, Redis pub/sub between them" if len(bare) > 1 else \
            "one process"
        row.unit, row.base_label = "deliveries/s", (
            f"bare uvicorn WebSocket broadcast of the same frame, {where}")
        row.target = FleetProbe(f"fan-out {count:,}", opentim[0], opentim[2], "flat",
                                WINDOW, servers)
        row.base = FleetProbe(f"bare fan-out {count:,}", base[0], base[2], "flat", WINDOW,
                              bare)
        for r in extra:  # the rate row, on the same connections
            r.kind, r.unit = "latency", "ms"
            r.base_label = f"bare broadcast server, same {RATE} messages/s"
            r.target = FleetProbe(f"{RATE}/s into {count:,}", opentim[0], opentim[2],
                                  "rate", RATE, servers, latency=True,
                                  max_seconds=RATE_SECONDS)
            r.base = FleetProbe(f"bare {RATE}/s into {count:,}", base[0], base[2], "rate",
                                RATE, bare, latency=True, max_seconds=RATE_SECONDS)
        suite.measure([row, *extra], suite.args.presence_rounds, [*servers, *bare])
        for r in [row, *extra]:
            note_clients(suite, r)
        if not suite.args.quick and row.runs:
            floor(suite, row, base[0], base[2], bare)
    finally:
        for proc in reversed(started):
            suite.procs.stop_one(proc)


def fleet(suite: Suite, name: str, b: Backend, gateways: list[str], send_url: str,
          group: str, count: int, servers: list[Server],
          extra: list[str]) -> tuple[subprocess.Popen[str], str, Path]:
    """A bench/fanout.py process with ``count`` connections joined to ``group``; returns
    (process, its READY line, its log)."""
    log = suite.tmp / f"fanout-{name}.log"
    argv = [*(a for g in gateways for a in ("--gateway", g)), "--send-url", send_url,
            "--sdkappid", str(b.sdkappids["off"]), "--key", b.keys["off"], "--group", group,
            "--prefix", PREFIX, "--count", str(count), "--sender", SENDER,
            *(a for s in servers for a in ("--server-pid", str(s.proc.pid))), *extra]
    proc = suite.procs.client(argv, log, script=FANOUT, commands=True)
    line = suite.procs.ready(proc, log, 120 + count / 20)
    ready = json.loads(line.removeprefix("READY "))
    suite.note(f"{name}: {count:,} connections opened in {ready['open_s']:.1f} s, their "
               f"join_group (all sent at once) answered in {ready['join_s']:.1f} s")
    return proc, line, log


def floor(suite: Suite, row: Row, proc: subprocess.Popen[str], log: Path,
          bare: list[Server]) -> None:
    """The bare server writing the frame's bytes, framed once, straight to each socket:
    what is left is the kernel's send (on loopback, the receiving side's TCP work too)."""
    probe = FleetProbe("floor", proc, log, "flat", WINDOW, bare, query="raw=1")
    loads = [probe.run(suite.args.seconds) for _ in range(suite.args.presence_rounds)]
    rate = sorted(x.value for x in loads)[len(loads) // 2]
    cpu = sorted(x.cpu_us or 0.0 for x in loads)[len(loads) // 2]
    suite.note(f"{row.label[:70]} [{row.backend}]: floor, the bare server writing the "
               f"frame once framed straight to each socket (no ASGI send, no per-connection "
               f"framing): {rate:,.0f} deliveries/s, {cpu:.1f} µs of server CPU each")


def note_clients(suite: Suite, row: Row) -> None:
    """How busy each side's client and servers were: past ~90% of its core, the client is
    what limits the rate. Deliveries lost (rate mode only; flat mode fails on any)."""
    parts = []
    for side, probe in (("OpenTIM", row.target), ("bare", row.base)):
        if isinstance(probe, FleetProbe) and probe.results:
            client, servers = probe.busy()
            flag = " (client-bound)" if client > 0.9 and servers < 0.9 else ""
            lost = sum(r["lost"] for r in probe.results)
            parts.append(f"{side}: client {client:.0%} of its core, server(s) "
                         f"{servers:.0%}{flag}" + (f", {lost:,} deliveries never arrived "
                                                   "(shed or lost)" if lost else ""))
    if parts:
        suite.note(f"{row.label[:70]} [{row.backend}]: {'; '.join(parts)}")
