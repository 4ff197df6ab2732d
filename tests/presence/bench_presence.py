"""Rough numbers for the presence stores: memory per member and page latency.

Not a test (no assertions on time). Run:

    .venv/bin/python tests/presence/bench_presence.py [--members 100000] [--redis URL]

Memory backend: tracemalloc delta over the joins. Redis backend: MEMORY USAGE of the
group's keys and the used_memory delta; page cost both as seen by the client (one
EVALSHA round trip) and inside Redis (INFO commandstats, usec per evalsha).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

if importlib.util.find_spec("opentim") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from opentim.presence import MemoryPresenceStore, PresenceStore

APP, G, NOW = 1400000001, "@TGS#aBENCH", 1_700_000_000.0


def member(i: int) -> tuple[str, str, str, str]:
    """account, conn id, nick, avatar - sizes typical of real ids and URLs."""
    return (
        f"user_{i:07d}",
        f"{uuid.UUID(int=i)}",
        f"Nick {i}",
        f"https://cdn.example.com/a/{i}.png",
    )


async def timed(label: str, fn: Any, n: int = 200) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        ts.append(time.perf_counter() - t)
    med = statistics.median(ts) * 1e6
    print(f"  {label:<44} median {med:9.1f} us   p90 {sorted(ts)[int(n * 0.9)] * 1e6:9.1f} us")
    return med


async def pages(s: PresenceStore, members: int) -> None:
    p1 = await s.page(APP, G, cursor=0, now=NOW)
    await timed("page 1 (500 rows)", lambda: s.page(APP, G, cursor=0, now=NOW))
    await timed(
        "page 2 (500 rows, from cursor)", lambda: s.page(APP, G, cursor=p1.next_cursor, now=NOW)
    )
    await timed(
        "page mark=1000 (500 of 1000 marked)", lambda: s.page(APP, G, cursor=0, mark=1000, now=NOW)
    )
    await timed(
        "page mark=1001 (empty index)", lambda: s.page(APP, G, cursor=0, mark=1001, now=NOW)
    )
    await timed("count", lambda: s.count(APP, G, now=NOW))
    print(f"  page 1 bytes: {len(p1.rows)}")
    n = [members]

    async def churn() -> None:
        a, c, nick, av = member(n[0])
        await s.join(APP, G, a, c, nick=nick, avatar=av, now=NOW)
        await s.leave(APP, G, a, c, now=NOW)
        n[0] += 1

    await timed("join + leave", churn, 500)


async def fill(s: PresenceStore, members: int, concurrency: int) -> None:
    for start in range(0, members, concurrency):
        await asyncio.gather(
            *(
                s.join(APP, G, a, c, nick=nick, avatar=av, now=NOW)
                for a, c, nick, av in map(member, range(start, min(start + concurrency, members)))
            )
        )
    marked = [(member(i)[0], [1000]) for i in range(0, members, max(1, members // 1000))][:1000]
    for i in range(0, len(marked), 500):
        await s.set_marks(APP, G, marked[i : i + 500], now=NOW)


async def bench_memory(members: int) -> None:
    print(f"memory backend, {members} members")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    s = MemoryPresenceStore()
    await fill(s, members, 1)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"  {used / members:.0f} bytes/member (tracemalloc, {used / 2**20:.1f} MiB total)")
    await pages(s, members)


async def bench_redis(members: int, url: str) -> None:
    import redis.asyncio as aioredis

    from opentim.presence.redis import RedisPresenceStore

    print(f"redis backend, {members} members ({url})")
    client = aioredis.from_url(url)
    prefix = f"opentim-bench-{uuid.uuid4().hex[:8]}"
    s = RedisPresenceStore(client, node_id="bench", prefix=prefix, background=False)
    await s.start()
    try:
        before = (await client.info("memory"))["used_memory"]
        t = time.perf_counter()
        await fill(s, members, 64)
        print(f"  filled in {time.perf_counter() - t:.1f} s")
        after = (await client.info("memory"))["used_memory"]
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        usage = {k.decode(): await client.memory_usage(k, samples=0) for k in keys}
        total = sum(usage.values())
        print(f"  {total / members:.0f} bytes/member (MEMORY USAGE of the group's keys)")
        print(f"  {(after - before) / members:.0f} bytes/member (used_memory delta)")
        for k, v in sorted(usage.items(), key=lambda kv: -kv[1])[:6]:
            print(f"    {k:<60} {v / members:7.1f} B/member")
        stats0 = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        await timed(
            "page 1 (500 rows), client round trip", lambda: s.page(APP, G, cursor=0, now=NOW)
        )
        stats1 = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        calls = stats1["calls"] - stats0.get("calls", 0)
        usec = stats1["usec"] - stats0.get("usec", 0)
        print(f"  page 1 inside Redis: {usec / calls:.1f} us per EVALSHA")
        await pages(s, members)
        await s.drop_group(APP, G)
    finally:
        await s.close()
        left = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if left:
            await client.unlink(*left)
        await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--skip-redis", action="store_true")
    args = ap.parse_args()
    asyncio.run(bench_memory(args.members))
    if not args.skip_redis:
        asyncio.run(bench_redis(args.members, args.redis))


if __name__ == "__main__":
    main()
