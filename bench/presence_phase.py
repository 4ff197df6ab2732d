"""Phase 2: presence on the memory and Redis backends. Members are held online through real
gateway connections; the REST rows on them, gateway churn and heartbeats, webhook latency
and webhook delivery are measured against their baselines (bare ASGI, raw Redis, a bare
WebSocket echo, a bare receiver)."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from typing import TYPE_CHECKING

from backends import Backend
from probes import ClientProbe, Load, WrkProbe, received, webhook_metrics
from processes import BARE, LOG_LEVEL, PY, BenchError, Server
from report import Row
from scenarios import CHURN, CHURNERS, HELD, HOOK_GROUPS, SCENARIOS, Call

from opentim.webhooks.delivery import WebhookSettings
from opentim.webhooks.payloads import MEMBER_STATE_CHANGE

if TYPE_CHECKING:
    from harness import Suite


def phase_presence(suite: Suite) -> None:
    """presence on the memory and Redis backends, through the gateway"""
    receiver = suite.procs.server("webhook receiver", [PY, BARE, "--log-level", LOG_LEVEL],
                                  suite.tmp / "receiver.log", core=1)
    backends = {"memory": Backend("memory", f"sqlite:///{suite.tmp}/memory.db", 1400000300)}
    if suite.db.redis_url:
        backends["redis"] = Backend("redis", f"sqlite:///{suite.tmp}/redis.db", 1400000400,
                                    redis=suite.db.redis_url)
    for row in suite.rows:
        if row.backend == "redis" and not suite.db.redis_url:
            row.status = "skipped: no Redis"
    hook = ["--callback-url", f"{receiver.url}/callback", "--callback-command",
            MEMBER_STATE_CHANGE]
    for b in backends.values():
        b.create_apps({"off": [], **({"hook": hook} if b.name == "memory" else {})})
        b.start(suite.procs, suite.tmp / f"{b.name}.log")
    for b in backends.values():
        suite.seed(b, (c for s in SCENARIOS if b.name in s.backends for c in s.setup))
    holders = {(b.name, group): suite.procs.client(
        ["hold", *b.gateway_args("off"), "--prefix", prefix, "--count", str(count),
         "--join", group], suite.tmp / f"hold-{b.name}-{group}.log")
        for b in backends.values() for group, (prefix, count) in HELD.items()}
    for (name, group), proc in holders.items():
        suite.procs.ready(proc, suite.tmp / f"hold-{name}-{group}.log", 180)
    for b in backends.values():
        suite.seed(b, (c for s in SCENARIOS if b.name in s.backends for c in s.after_join))
    bare = suite.plan_calls(backends)
    assert bare is not None
    plan_gateway(suite, backends, bare)
    servers = [b.server for b in backends.values() if b.server is not None]
    # modify_user_info goes last: each call pushes marks_changed with 500 members to the
    # 500 held connections of its group, work that would spill into the rows after it.
    rows = [r for r in suite.rows if r.backend in backends and r.target]
    suite.measure([r for r in rows if not r.scenario.drain],
                  suite.args.presence_rounds, servers)
    check_online(suite, backends, holders, "after the gateway rows")
    if "memory" in backends:
        row = suite.row("webhooks", "memory")
        try:
            measure_webhooks(suite, row, backends["memory"], receiver)
        except BenchError as exc:
            suite.fail([row], exc)
    check_online(suite, backends, holders, "after the webhook rows")
    last = [r for r in rows if r.scenario.drain]
    suite.measure(last, suite.args.presence_rounds, servers)
    for r in last:
        if isinstance(r.target, WrkProbe) and r.target.busy:
            busy = statistics.median(r.target.busy)
            suite.note(f"{r.label.split(';')[0]} [{r.backend}]: the server was busy "
                       f"{busy:.0%} of the run (its CPU time ÷ wall time, drain included)")
    check_online(suite, backends, holders, "after modify_user_info")


def check_online(suite: Suite, backends: dict[str, Backend],
                 holders: dict[tuple[str, str], subprocess.Popen[str]], when: str) -> None:
    """The held members must all still be online, their holder processes alive."""
    for (name, group), proc in holders.items():
        count = Call("group_open_http_svc/get_online_member_num", {"GroupId": group})
        online = json.loads(backends[name].post(count))["OnlineMemberNum"]
        if online != HELD[group][1] or proc.poll() is not None:
            raise BenchError(f"{name}, {when}: {online} of {HELD[group][1]} held members "
                             f"of {group} online, holder exit code {proc.poll()}; see "
                             f"{suite.tmp / f'hold-{name}-{group}.log'}")


def churn_probe(label: str, b: Backend, app: str, groups: tuple[str, ...], *extra: str,
                latency: bool = False) -> ClientProbe:
    assert b.server is not None
    return ClientProbe(label, [
        "churn", *b.gateway_args(app), "--prefix", "bench_c_", "--count", str(CHURNERS),
        "--groups", ",".join(groups), "--server-pid", str(b.server.proc.pid), *extra],
        b.server, latency)


def plan_gateway(suite: Suite, backends: dict[str, Backend], bare: Server) -> None:
    # pairs/s, 2 callbacks each: well below what delivery sustains (~600/s measured)
    rate = "100" if suite.args.quick else "150"
    for row in suite.rows:
        b = backends.get(row.backend)
        special = row.scenario.special
        if b is None or row.status or special not in ("heartbeats", "churn",
                                                      "hook_latency"):
            continue
        if special == "heartbeats":
            row.unit = "round trips/s"
            row.target = churn_probe("heartbeats", b, "off", (CHURN,), "--op", "heartbeat")
            row.base = ClientProbe("heartbeats, bare echo", [
                "churn", "--url", bare.url, "--sdkappid", "1", "--key", "x", "--count",
                str(CHURNERS), "--groups", CHURN, "--op", "heartbeat", "--server-pid",
                str(bare.proc.pid)], bare)
            row.base_label = "bare ASGI WebSocket echo, same client"
        elif special == "churn":
            if not suite.db.redis_url:
                row.status = "skipped: no Redis for the baseline"
                continue
            row.unit, row.same_cpu = "members/s", False
            row.target = churn_probe(f"churn on {b.name}", b, "off", (CHURN,))
            row.base = ClientProbe("raw Redis churn", [
                "redis-churn", "--redis", suite.db.redis_url, "--prefix", suite.db.prefix,
                "--count", str(CHURNERS)])
            row.base_label = ("raw Redis: a join's INCR+ZADD+HSET+HINCRBY+HSET, a leave's "
                              "4 HDEL/ZREM, 2 pipelines, redis-py asyncio, 64 tasks")
        else:
            row.kind, row.unit = "latency", "ms"
            row.target = churn_probe("paced churn, webhooks on", b, "hook", HOOK_GROUPS,
                                     "--rate", rate, latency=True)
            row.base = churn_probe("paced churn, webhooks off", b, "off", (CHURN,),
                                   "--rate", rate, latency=True)
            row.base_label = f"same, app without callback URL ({rate} pairs/s)"


def measure_webhooks(suite: Suite, row: Row, b: Backend, receiver: Server) -> None:
    """Flat-out churn on the app with webhooks fills the delivery queues; the rate at
    which they drain is the delivery throughput. Baseline: the receiver's own max."""
    assert b.server is not None
    row.unit, row.base_label = "deliveries/s", "the receiver's own max under wrk"
    twin = suite.procs.server("receiver (baseline)", [PY, BARE, "--log-level", LOG_LEVEL],
                              suite.tmp / "receiver-twin.log")
    sample = json.dumps({"CallbackCommand": MEMBER_STATE_CHANGE, "GroupId": HOOK_GROUPS[0],
                         "Type": "AVChatRoom", "EventType": "Online", "EventCause": "Join",
                         "MemberList": [{"Member_Account": "bench_c_0"}],
                         "EventTime": "1795381924000"}).encode()
    query = f"SdkAppid={b.sdkappids['hook']}&CallbackCommand={MEMBER_STATE_CHANGE}"
    base_probe = WrkProbe("receiver under wrk", f"{twin.url}/callback?{query}&contenttype="
                          "json", [suite.write("callback.json", sample), suite.write(
                              "callback-ok.json", b'{"ActionStatus":"OK","ErrorCode":0,'
                              b'"ErrorInfo":""}')], twin, suite.wrk_bin,
                          suite.args.connections)
    churn = churn_probe("churn with webhooks", b, "hook", HOOK_GROUPS)
    for _ in range(1 if suite.args.quick else 3):
        base = base_probe.run(suite.args.seconds)
        measured = delivery(suite, b, receiver, churn, b.sdkappids["hook"])
        row.runs.append((measured, base))
        print(f"  webhooks: {measured.value:,.0f} deliveries/s, receiver alone "
              f"{base.value:,.0f} req/s", flush=True)


def delivery(suite: Suite, b: Backend, receiver: Server, churn: ClientProbe, app: int) -> Load:
    """Deliveries per second while the queues ``churn`` fills drain (measure_webhooks)."""
    assert b.server is not None
    server = b.server

    def metrics() -> dict[str, float]:
        return webhook_metrics(b.metrics_url, app)

    m0, r0, t0, cpu0 = metrics(), received(receiver), time.monotonic(), server.cpu_seconds()
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
    if received(receiver) - r0 < sent:
        raise BenchError(f"webhooks: the receiver got {received(receiver) - r0} of {sent:.0f}")
    if m1["queued"] < 200 or drained <= 0:
        suite.note(f"webhooks: the queues never built up ({m1['queued']:.0f} queued when "
                   "churn stopped): the figure is deliveries during churn, a lower bound")
        return Load(sent / (t2 - t0), cpu_us=(cpu2 - cpu0) / sent * 1e6)
    suite.note(f"webhooks: churn with webhooks on ran {load.value:,.0f} pairs/s "
               f"({events:,} callbacks): {m1['sent'] - m0['sent']:,.0f} delivered during "
               f"it, {m1['queued']:,.0f} queued at its end, {dropped:,.0f} dropped "
               f"(queues full), {m2['retried'] - m0['retried']:,.0f} retried; the queue "
               f"then drained at the rate shown, {len(HOOK_GROUPS)} groups, up to "
               f"{WebhookSettings().concurrency} in flight")
    return Load(drained / (t2 - t1), cpu_us=(cpu2 - cpu1) / drained * 1e6)
