"""The Redis Cluster phase: the same presence work on a local 3-master Redis Cluster and on
one Redis, in the same run, paired round by round.

The phase starts both Redis setups itself, the same way (tests/helpers/redis_cluster.py:
``redis-server`` on free loopback ports, nothing persisted): three masters joined by
``redis-cli --cluster create``, and one plain ``redis-server``, so neither shares its Redis
with anything else (the run's ``--redis-url`` database is not used here); it stops them
at its end. Two OpenTIM servers (core 0), each with its own SQLite file, one with
``--redis`` at a node of the cluster and one at the single Redis, each hold the same 1,000
members online in one AVChatRoom through real gateway connections (bench/clients.py hold,
core 1), 500 of them with Mark 1000; then ``get_members`` (plain and Mark 1000) under wrk
and gateway join + quit churn run on the cluster, each against the same on one Redis.

A group's keys share one hash slot, so one group lives on one master: the cluster rows
price what the cluster client costs per call (slot routing, a connection pool per master,
the follow-ups that take a round trip of their own), not a spread of one room's load. No
Redis server is pinned; they share the machine's cores with everything else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from backends import Backend
from presence_phase import churn_probe
from processes import ROOT, BenchError
from report import Row
from scenarios import AV, CHURN, GET_MEMBERS, HELD, MARKED, PRESENCE_SETUP, Call, marks

if TYPE_CHECKING:
    from harness import Suite

ROWS = {"cluster_get_members": {"GroupId": AV, "Timestamp": 0},
        "cluster_get_members_mark": {"GroupId": AV, "Timestamp": 0, "Mark": 1000},
        "cluster_churn": None}


def local_cluster_module() -> ModuleType:
    """tests/helpers/redis_cluster.py, loaded by its path (standard library only; the tests
    package itself is not imported)."""
    path = ROOT / "tests" / "helpers" / "redis_cluster.py"
    spec = importlib.util.spec_from_file_location("opentim_bench_redis_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def phase_cluster(suite: Suite) -> None:
    """presence on a local 3-master Redis Cluster against one Redis: get_members and
    gateway churn"""
    rows = {special: suite.row(special, "redis-cluster") for special in ROWS}
    clusters = local_cluster_module()
    started: list[Any] = []
    try:  # whatever happens (a signal too), what was started is stopped
        try:
            started.append(clusters.LocalCluster.start())
            started.append(clusters.LocalCluster.start(cluster_mode=False))
        except clusters.ClusterUnavailable as exc:
            if os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1":
                raise BenchError(f"no local Redis Cluster: {exc} "
                                 "(OPENTIM_REQUIRE_SERVICES=1)") from None
            suite.note(f"skipped the Redis Cluster rows: {exc}")
            for row in rows.values():
                row.status = "skipped: no Redis Cluster"
            return
        cluster, single = started
        suite.note(f"Redis Cluster: 3 masters on 127.0.0.1 ports "
                   f"{', '.join(map(str, cluster.ports))}, its baseline one Redis on port "
                   f"{single.ports[0]} (both started and stopped by the run)")
        measure(suite, rows, cluster.url, single.url)
    finally:
        suite.procs.stop()  # the servers first: they write to Redis until they stop
        for redis in started:
            redis.stop()


def measure(suite: Suite, rows: dict[str, Row], cluster_url: str, single_url: str) -> None:
    backends = {"single": Backend("one Redis", f"sqlite:///{suite.tmp}/single.db",
                                  1400000700, redis=single_url),
                "cluster": Backend("Redis Cluster", f"sqlite:///{suite.tmp}/cluster.db",
                                   1400000800, redis=cluster_url)}
    prefix, count = HELD[AV]
    for name, b in backends.items():
        b.create_apps({"off": []})
        b.start(suite.procs, suite.tmp / f"cluster-{name}.log")
        for call in PRESENCE_SETUP:
            b.post(call)
    holders = {name: suite.procs.client(
        ["hold", *b.gateway_args("off"), "--prefix", prefix, "--count", str(count),
         "--join", AV], suite.tmp / f"hold-cluster-{name}.log")
        for name, b in backends.items()}
    for name, proc in holders.items():
        suite.procs.ready(proc, suite.tmp / f"hold-cluster-{name}.log", 180)
    for b in backends.values():
        b.post(marks(AV, 1, 1000, range(MARKED)))
    single, cluster = backends["single"], backends["cluster"]
    assert single.server is not None and cluster.server is not None
    for special, body in ROWS.items():
        row = rows[special]
        if body is None:
            row.unit, row.same_cpu = "members/s", False
            row.target = churn_probe("churn on the cluster", cluster, "off", (CHURN,))
            row.base = churn_probe("churn on one Redis", single, "off", (CHURN,))
            row.base_label = "the same churn, the server on one Redis"
            continue
        call = Call(GET_MEMBERS, body)
        row.target = suite.wrk_probe(f"{special} on the cluster", cluster.url(call), [call],
                                     [cluster.post(call)], cluster.server)
        row.base = suite.wrk_probe(f"{special} on one Redis", single.url(call), [call],
                                   [single.post(call)], single.server)
        row.base_label = "the same call, the server on one Redis"
    suite.measure(list(rows.values()), suite.args.presence_rounds,
                  [single.server, cluster.server])
    online = Call("group_open_http_svc/get_online_member_num", {"GroupId": AV})
    for name, b in backends.items():
        got = json.loads(b.post(online))["OnlineMemberNum"]
        if got != count or holders[name].poll() is not None:
            raise BenchError(f"{b.name}: {got} of {count} held members online after the "
                             f"cluster rows, holder exit code {holders[name].poll()}")
