"""The soak phase (run only when named: ``bench/run --only soak``): one `opentim serve`
process on Redis presence (the run's Redis database) and SQLite under steady mixed load for
``--soak-minutes`` (default 10), its memory and Redis's sampled every few seconds.

The load, in cycles of CYCLE seconds until the time is up:

* messages: one bench/fanout.py process (core 1) holds HOLDERS connections joined to an
  AVChatRoom and sends MESSAGE_RATE send_group_msg a second into it, each received by
  every holder (delays and losses counted per cycle);
* churn: bench/clients.py churn (core 1), CHURNERS fresh gateway connections per cycle,
  each doing join_group + quit_group of the same room (CHURN_RATE pairs/s in all), then
  disconnecting (the process exits) at the cycle's end;
* marks: modify_user_info from the run itself, mark 1001 set on every holder, then deleted,
  one call a second (each pushes marks_changed to the room).

Every SAMPLE_EVERY seconds: the server's VmRSS (/proc/<pid>/status), Redis's used_memory
(``INFO memory``: the whole Redis server, other databases included) and the MEMORY USAGE of
every key in the run's own Redis database. After the warm-up (a fifth of the run, at most 2
minutes), a least-squares line through each series gives its slope in KB/min, and another
through the second half of the run (a store that fills up over minutes, such as the send
guard's 300 s duplicate memory in Redis, slopes up after a short warm-up and is flat once
full); each row's result is the last sample, its baseline the sample that ended the
warm-up.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis
from backends import Backend
from messages_phase import PREFIX, SEND, SENDER, fleet
from presence_phase import churn_probe
from probes import FleetProbe, Load
from processes import BenchError
from report import size
from scenarios import CHURNERS, Call, av_group, import_accounts, marks

if TYPE_CHECKING:
    from harness import Suite

GROUP = "bench_soak"
HOLDERS, MESSAGE_RATE, CHURN_RATE = 200, 20, 100
CYCLE, SAMPLE_EVERY = 10, 3.0
SERIES = {"soak_rss": "server RSS", "soak_redis": "Redis used_memory",
          "soak_keys": "the run's Redis keys"}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes) points, in KB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    cov = sum((t - mt) * (v - mv) for t, v in points)
    return cov / var * 60 / 1024 if var else 0.0


def key_sizes(client: Any) -> dict[str, int]:
    """MEMORY USAGE of every key in the database ``client`` is on."""
    return {key.decode(errors="replace"): client.memory_usage(key, samples=0) or 0
            for key in client.scan_iter(count=1000)}


def phase_soak(suite: Suite) -> None:
    """soak: churn, marks and group messages for --soak-minutes on Redis presence, server
    RSS and Redis memory sampled; slopes after the warm-up"""
    rows = {special: suite.row(special, "Redis presence, SQLite") for special in SERIES}
    if not suite.db.redis_url:
        for row in rows.values():
            row.status = "skipped: no Redis"
        return
    b = Backend("soak", f"sqlite:///{suite.tmp}/soak.db", 1400000900,
                redis=suite.db.redis_url)
    b.create_apps({"off": ["--group-msg-rate", "0"]})  # 40/s per group would refuse some
    server = b.start(suite.procs, suite.tmp / "soak.log")
    for call in (*import_accounts(PREFIX, HOLDERS), *import_accounts("bench_c_", CHURNERS),
                 Call("im_open_login_svc/multiaccount_import",
                      {"AccountList": [{"UserID": SENDER}]}), av_group(GROUP)):
        b.post(call)
    proc, _, log = fleet(suite, "soak", b, [server.url], b.url(Call(SEND, {})), GROUP,
                         HOLDERS, [server], [])
    messages = FleetProbe("soak messages", proc, log, "rate", MESSAGE_RATE, [server],
                          latency=True)
    churn = churn_probe("soak churn", b, "off", (GROUP,), "--rate", str(CHURN_RATE))
    flips = [marks(GROUP, command, 1001, range(HOLDERS), PREFIX) for command in (1, 2)]
    db = redis.Redis.from_url(suite.db.redis_url)
    minutes = suite.args.soak_minutes
    warm_up = min(120.0, minutes * 60 / 5)
    samples: list[tuple[float, dict[str, int]]] = []
    ops = {"churn pairs": 0, "churn connections": 0, "marks calls": 0, "messages": 0,
           "deliveries": 0, "lost": 0}
    delays: list[float] = []
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="soak")
    started = time.monotonic()
    end = started + minutes * 60
    next_sample = next_mark = started
    try:
        while time.monotonic() < end:
            load: list[Future[Load]] = [pool.submit(churn.run, CYCLE),
                                        pool.submit(messages.run, CYCLE)]
            while not all(f.done() for f in load):
                now = time.monotonic()
                if now >= next_mark:
                    b.post(flips[ops["marks calls"] % 2])
                    ops["marks calls"] += 1
                    next_mark += 1.0
                if now >= next_sample:
                    info = db.info("memory")
                    samples.append((now - started, {
                        "soak_rss": server.rss(), "soak_redis": int(info["used_memory"]),
                        "soak_keys": sum(key_sizes(db).values())}))
                    next_sample += SAMPLE_EVERY
                time.sleep(0.02)
            for f in load:
                f.result()  # a failed cycle (BenchError) ends the phase
            ops["churn pairs"] += churn.last["ops"]
            ops["churn connections"] += CHURNERS
            r = messages.results[-1]
            ops["messages"] += r["messages"]
            ops["deliveries"] += r["deliveries"]
            ops["lost"] += r["lost"]
            delays.append(r["p99_us"] / 1000)
            server.check_alive()
        largest = sorted(key_sizes(db).items(), key=lambda kv: -kv[1])[:3]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        db.close()
    elapsed = time.monotonic() - started
    online = online_after(b)
    if online != HOLDERS:
        raise BenchError(f"soak: {online} members online in {GROUP} after the run, "
                         f"{HOLDERS} holders expected (churners stuck online?)")
    report(suite, rows, samples, warm_up, elapsed, ops, delays)
    suite.note("soak: the largest keys at the end: " + ", ".join(
        f"{key} {size(n)}" for key, n in largest) + f"; the server's log: "
        f"{server.log_summary()}")


def online_after(b: Backend) -> int:
    """The room's online count once the last churners' disconnects are through (≤ 15 s)."""
    count = Call("group_open_http_svc/get_online_member_num", {"GroupId": GROUP})
    deadline = time.monotonic() + 15
    while True:
        online = int(json.loads(b.post(count))["OnlineMemberNum"])
        if online == HOLDERS or time.monotonic() > deadline:
            return online
        time.sleep(0.5)


def report(suite: Suite, rows: dict[str, Any], samples: list[tuple[float, dict[str, int]]],
           warm_up: float, elapsed: float, ops: dict[str, int], delays: list[float]) -> None:
    after = [(t, s) for t, s in samples if t >= warm_up]
    if len(after) < 2:
        raise BenchError(f"soak: {len(after)} samples after the warm-up")
    base_t, base = after[0]
    parts = []
    for special, row in rows.items():
        fitted = slope([(t, s[special]) for t, s in after])
        # Windows that fill up after the warm-up (the send guard's 300 s duplicate memory
        # in Redis) show as a slope over the whole run but not over its second half.
        late = slope([(t, s[special]) for t, s in samples if t >= elapsed / 2])
        row.kind, row.unit = "size", ""
        row.base_label = f"the same, at the end of the warm-up ({base_t / 60:.1f} min)"
        row.runs.append((Load(after[-1][1][special]), Load(base[special])))
        row.label += (f"; slope after the warm-up {fitted:+,.1f} KB/min, over the second "
                      f"half {late:+,.1f} KB/min")
        first = samples[0][1][special]
        parts.append(f"{SERIES[special]} {size(first)} at the start, {size(base[special])} "
                     f"after the warm-up, {size(after[-1][1][special])} at the end: "
                     f"{fitted:+,.1f} KB/min after the warm-up, {late:+,.1f} KB/min over "
                     f"the second half")
    suite.note(f"soak: {elapsed / 60:.1f} min, {len(samples)} samples every "
               f"{SAMPLE_EVERY:g} s, the first {warm_up / 60:.1f} min warm-up; "
               + "; ".join(parts) + ". Done: " + ", ".join(f"{v:,} {k}" for k, v in
                                                            ops.items())
               + f" ({HOLDERS} holders, {MESSAGE_RATE} messages/s, churn {CHURN_RATE} "
               f"pairs/s, 1 marks call/s of {HOLDERS} members); message delay p99 per "
               f"{CYCLE} s cycle: worst {max(delays):,.1f} ms, median "
               f"{sorted(delays)[len(delays) // 2]:,.1f} ms")
