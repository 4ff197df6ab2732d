"""OpenTIM benchmark suite: real servers under load, each figure beside a same-run baseline.

Run it through ``bench/run`` (``--quick`` for the CI smoke version). Every server is pinned
to core 0 and every load generator (wrk, bench/clients.py, bench/fanout.py) to core 1. Seven
phases, each stopping what it started before the next begins:

1. REST on SQLite and PostgreSQL (the database of --pg-url, which the run creates and
   drops, when reachable): the calls under wrk against the bare ASGI app of bench/bare.py
   answering the same bytes (sends under bench/vary.lua, a fresh Random in each); then
   admin_getroammsg at 10k, and at 1M (100k quick) stored messages (bench/history.py).
2. Presence on the memory and the Redis backend (the database of --redis-url, claimed
   only if empty, when reachable): 1,000 members held online through real gateway
   connections, then get_members, get_online_member_num and modify_user_info under wrk,
   gateway churn, webhook latency and delivery (counters read from the server's metrics
   listener, --metrics-port); baselines: bare ASGI (same bytes, or re-encoding the same
   document), raw Redis doing the same writes, a bare WebSocket echo, a bare receiver.
3. Messages (bench/messages_phase.py): send_group_msg fanned out through the gateway to an
   AVChatRoom of 1,000 and 10,000 raw WebSocket connections (bench/fanout.py), 1,000 over
   two processes on Redis, and 100 messages/s into 1,000; baseline: bench/bare_ws.py, a
   bare uvicorn WebSocket server broadcasting the same frame. Quick mode: 1,000 only.
4. Redis Cluster (bench/cluster_phase.py): a local 3-master cluster and one plain Redis,
   both started and stopped by the phase; get_members and gateway churn on 1,000 held
   members, the server on the cluster against the same server on the one Redis.
5. Idle gateway connections (10k; 1k quick): server memory per connection against a bare
   WebSocket app.
6. The presence store in process: memory per member and page latency at 100k members (10k
   quick).
7. bench/import_members.py (``--quick`` in quick mode): import_group_member against the
   databases' bulk paths.

Two more phases run only when named (``--only soak``, ``--only abuse``), never in a plain
or ``--quick`` run, and their rows are in the table only then:

8. Soak (bench/soak_phase.py): --soak-minutes (default 10) of gateway churn, marks and
   group messages against one server on Redis presence and SQLite; the server's RSS and
   Redis's memory sampled every 3 s, each with its least-squares slope (KB/min) after
   the warm-up (the baseline column: the value at the warm-up's end).
9. Abuse (bench/abuse_phase.py, bench/abuse.py): a normal client's REST read and heartbeat
   round trip timed quiet and under each kind of abuse in turn (3,000 unauthenticated
   WebSockets, 3,000 slowloris connections, oversized frames, clients that never read
   while messages are pushed), with the server's RSS and how it closed the abusers.

It first prints which PostgreSQL and Redis databases it will write to (bench/scratch.py
takes only what is provably its own). Then it prints one table, a targets summary and the
import script's own table, writes a copy to bench/results/, and stops everything it
started, on errors and signals too. Any failed request, wrong answer body, dead server,
dropped connection or failing step makes it exit non-zero; a missed performance target
does not (the machine is shared and noisy).

A scenario is one entry in SCENARIOS (bench/scenarios.py): a REST call with its data and
baseline, or the name of a phase's step (``special``) measuring a row that is not one REST
call.
"""


# The modules of the suite, beside this entry point (its options, the run and its report):
#   scenarios.py   the rows: each REST call, its setup data and its baseline
#   harness.py     the Suite: rows, phase order, REST rows planned as paired wrk probes
#   phases.py, presence_phase.py, messages_phase.py, cluster_phase.py   the seven phases
#   soak_phase.py, abuse_phase.py   the two that run only when named (--only)
#   backends.py    OpenTIM servers with their apps; the run's scratch databases
#   processes.py   starting, pinning and stopping processes; SIGTERM and --time-limit
#   probes.py      wrk and bench/clients.py runs, CPU, idleness, webhook counters
#   report.py      the table, ratios, targets and the copy in bench/results/
# scratch.py decides which databases a run may take; clients.py, fanout.py, abuse.py,
# bare.py, bare_ws.py, post.lua, vary.lua and import_members.py are the processes the
# phases start;
# history.py writes the one-to-one history admin_getroammsg's row reads.

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import report
import scratch
from backends import PG_URL, REDIS_URL
from harness import Suite
from probes import ensure_wrk
from processes import BenchError, OverTime, Terminated, raise_nofile, unwind_on_signals


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
                   help="run only these phases: rest,presence,messages,cluster,idle,store,"
                        "imports; soak and abuse run only when named here")
    p.add_argument("--soak-minutes", type=float, default=10,
                   help="length of the soak phase (--only soak), warm-up included")
    p.add_argument("--abuse-seconds", type=float, default=40,
                   help="seconds each kind of abuse is measured for (--only abuse); the "
                        "quiet window before it is half as long")
    p.add_argument("--history-messages", type=int,
                   help="one-to-one messages stored for admin_getroammsg's second half "
                        "(default 1,000,000; 100,000 quick; at least 20,000)")
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


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    unwind_on_signals(args.time_limit)
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
    signal.alarm(0)  # the run is over: writing the report is not timed
    text = report.compose(argv, args, suite.rows, suite.versions, suite.db.lines, suite.notes,
                          wrk_bin, started)
    print("\n" + text + "\n", flush=True)
    print(suite.import_output)
    report.save(text, suite.import_output, mode)
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
